"""``tlbench server``: an MLflow tracking server on a shared database, for many machines."""

from __future__ import annotations

import os
import subprocess
import sys

import click

from tlbench.cli.common import err_console, fail


@click.command()
@click.option(
    "--backend-store-uri",
    envvar="TLBENCH_SERVER_STORE",
    required=True,
    help="database of runs: postgresql://USER:PASS@HOST:5432/DB (pip install 'tlbench[postgres]')",
)
@click.option(
    "--artifacts-destination",
    default=None,
    help="where the server keeps artifacts (default ./mlruns/server-artifacts; or s3://...)",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="bind address (0.0.0.0 lets other machines in)"
)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="server processes")
@click.option(
    "--allowed-hosts", default=None, help="Host headers MLflow accepts when exposed, e.g. 'mlflow.lan:5000'"
)
def server(
    backend_store_uri: str,
    artifacts_destination: str | None,
    host: str,
    port: int,
    workers: int,
    allowed_hosts: str | None,
) -> None:
    """Start an MLflow tracking server on a shared database, for many machines (127.0.0.1 unless --host)."""
    from tlbench.server import describe, server_command

    try:
        cmd = server_command(
            backend_store_uri,
            host=host,
            port=port,
            artifacts_destination=artifacts_destination,
            workers=workers,
            allowed_hosts=allowed_hosts,
        )
    except ValueError as err:
        fail(str(err))
    err_console.print(f"MLflow server on http://{host}:{port}: {describe(cmd)}", highlight=False)
    err_console.print(
        f"workers: tlbench run --grid NAME --tracking-uri http://{host}:{port}", highlight=False
    )
    try:
        sys.exit(subprocess.call(cmd, env=os.environ.copy()))
    except KeyboardInterrupt:
        sys.exit(0)
