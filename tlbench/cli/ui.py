"""``tlbench ui``: the MLflow UI over the tracking store, on 127.0.0.1 unless asked otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from tlbench.cli.common import err_console, tracking_option


@click.command()
@tracking_option
@click.option("--host", default="127.0.0.1", show_default=True, help="bind address (0.0.0.0 exposes it)")
@click.option("--port", default=5000, show_default=True, type=int)
def ui(tracking_uri: str | None, host: str, port: int) -> None:
    """Start the MLflow UI over the tracking store (on 127.0.0.1 unless --host)."""
    from tlbench.tracking import DEFAULT_STORE_DIR, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    mlflow_bin = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    cmd = [mlflow_bin, "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    if uri.startswith("sqlite:///"):
        cmd += ["--default-artifact-root", (DEFAULT_STORE_DIR / "artifacts").resolve().as_uri()]
    err_console.print(f"MLflow UI on http://{host}:{port} over {uri}", highlight=False)
    try:
        sys.exit(subprocess.call(cmd, env=os.environ.copy()))
    except KeyboardInterrupt:
        sys.exit(0)
