"""``tlbench ui``: the MLflow UI over the tracking store, opened on a grid's comparison table
(its training runs, the axes and test accuracy as columns, best first; see tracking/view.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import webbrowser
from pathlib import Path
from typing import Any

import click

from tlbench.cli import common


def _grid_urls(tracker: Any, base: str, grid: str | None) -> list[tuple[str, str]]:
    """(grid, runs-table URL) for ``grid`` or every grid experiment of the store; each one's
    experiment tagged and its saved view written first."""
    from tlbench.tracking.view import VIEW_KEY, VIEW_PREFIX, runs_url

    if grid is not None:
        spec, cells, _ = common.load(grid, (), check_backbones=False)
        exp_id = tracker.experiment_id(spec.name)
        tracker.ensure_view(exp_id, cells)
        return [(spec.name, runs_url(base, exp_id))]
    out = []
    for exp in tracker.grid_experiments():
        if VIEW_PREFIX + VIEW_KEY not in exp.tags:  # made before tlbench wrote views: all five axes
            tracker.ensure_view(exp.experiment_id, [])
        out.append((exp.name, runs_url(base, exp.experiment_id)))
    return out


def _open_when_up(host: str, port: int, url: str, timeout: float = 120) -> None:
    """Launch the browser once the server accepts connections."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                webbrowser.open(url)
                return
        except OSError:
            time.sleep(0.5)


@click.command()
@common.tracking_option
@click.option(
    "--grid", "-g", default=None, help="open on this grid's runs table (default: list every grid's)"
)
@click.option("--open", "open_", is_flag=True, help="launch a browser on the grid's table")
@click.option("--host", default="127.0.0.1", show_default=True, help="bind address (0.0.0.0 exposes it)")
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--insecure-no-auth", is_flag=True, help="allow a --host beyond loopback (the UI has no login)")
@click.option(
    "--workers", default=2, show_default=True, type=int, help="server processes (MLflow's default: 4)"
)
@common.clean_errors
def ui(
    tracking_uri: str | None,
    grid: str | None,
    open_: bool,
    host: str,
    port: int,
    insecure_no_auth: bool,
    workers: int,
) -> None:
    """Start the MLflow UI over the tracking store (on 127.0.0.1 unless --host), on the grid's
    training runs: axes and test accuracy as columns, sorted best first."""
    from tlbench.dburl import redact
    from tlbench.security import exposure_warning
    from tlbench.tracking import DEFAULT_STORE_DIR, Tracker

    warning = exposure_warning(host, insecure_no_auth, "the MLflow UI")  # exit 2 before binding
    if warning:
        common.err_console.print(f"[bold yellow]{warning}[/]", highlight=False)
    tracker = Tracker(tracking_uri)
    uri = tracker.uri
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    urls = _grid_urls(tracker, base, grid)
    mlflow_bin = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    cmd = [mlflow_bin, "ui", "--host", host, "--port", str(port), "--workers", str(workers)]
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": uri}  # not argv: a database URL may hold a password
    if uri.startswith("sqlite:///"):
        cmd += ["--default-artifact-root", (DEFAULT_STORE_DIR / "artifacts").resolve().as_uri()]
    common.err_console.print(f"MLflow UI on {base} over {redact(uri)}", highlight=False)
    for name, url in urls:
        click.echo(f"{name}: {url}")  # one line, whatever the terminal's width
    if not urls:
        common.err_console.print("no grid in this store yet: tlbench run --grid smoke", highlight=False)
    if open_:
        target = urls[0][1] if urls else base
        threading.Thread(target=_open_when_up, args=(shown, port, target), daemon=True).start()
    sys.stdout.flush()
    try:
        sys.exit(subprocess.call(cmd, env=env))
    except KeyboardInterrupt:
        sys.exit(0)
