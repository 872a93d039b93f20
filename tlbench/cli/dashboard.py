"""``tlbench dashboard``: optuna-dashboard over the tuning studies, on 127.0.0.1 unless asked."""

from __future__ import annotations

import sys

import click

from tlbench.cli.common import clean_errors, err_console, storage_option


@click.command()
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="bind address (0.0.0.0 exposes it)")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--insecure-no-auth", is_flag=True, help="allow a --host beyond loopback (no login of its own)")
@clean_errors
def dashboard(storage: str | None, host: str, port: int, insecure_no_auth: bool) -> None:
    """Start optuna-dashboard over the tuning studies (on 127.0.0.1 unless --host)."""
    from tlbench.security import exposure_warning

    warning = exposure_warning(host, insecure_no_auth, "optuna-dashboard")  # exit 2 before binding
    if warning:
        err_console.print(f"[bold yellow]{warning}[/]", highlight=False)
    from optuna_dashboard import run_server

    from tlbench.dburl import redact
    from tlbench.tune import open_storage, resolve_storage_url

    url = resolve_storage_url(storage)
    store = open_storage(url)
    err_console.print(f"optuna-dashboard on http://{host}:{port} over {redact(url)}", highlight=False)
    try:
        run_server(store, host=host, port=port)
    except KeyboardInterrupt:
        sys.exit(0)
