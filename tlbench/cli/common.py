"""What every command shares: the consoles, the options, loading a grid, and one clear message
(exit status 2, no traceback) for every error a user can fix."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from tlbench.api import progress_console
from tlbench.errors import TlbenchError

# piped output (files, CI logs) gets wide tables instead of rich's 80-column default, and lines
# that are records (a cell's outcome, a message) are never wrapped mid-record
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200)
err_console = progress_console()


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


def clean_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can fix (``TlbenchError``: a grid, a name, a file; a tracking
    server's 401 / 403: the credentials) into one message and exit code 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TlbenchError as err:
            fail(str(err))
        except Exception as err:
            from tlbench.tracking.access import explain, unreachable

            damaged = _store_fault(err, kwargs.get("tracking_uri")) if "tracking_uri" in kwargs else None
            if damaged:
                fail(damaged)
            uri = kwargs.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or "the MLflow server"
            if explain(err, uri):
                fail(explain(err, uri) or "")
            if unreachable(err):
                fail(f"{uri} stayed unreachable through every retry: {unreachable(err)}", code=1)
            raise

    return wrapper


def _store_fault(err: Exception, tracking_uri: str | None) -> str | None:
    """SQLite's "malformed" from any path to the embedded store (a pool worker's, say) as the one
    sentence the tracker would have said (``tracking.damage``), once the store's file is indeed
    found damaged: a damaged Optuna database is not the store's fault."""
    from tlbench.tracking.damage import StoreDamagedError, damage, fault, sqlite_file
    from tlbench.tracking.store import resolve_tracking_uri

    db = sqlite_file(resolve_tracking_uri(tracking_uri))
    clear = fault(err, db) if db is not None and db.is_file() else None
    if isinstance(clear, StoreDamagedError) and db is not None and damage(db):
        return str(clear)
    return None


grid_option = click.option(
    "--grid", "-g", required=True, help="grid name (benchmarks/grids/NAME.yaml) or path to a .yaml file"
)
select_option = click.option(
    "--select",
    "-s",
    multiple=True,
    help="only cells whose name matches this glob (repeatable), e.g. 'digits/*/finetune/*'",
)
tracking_option = click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    default=None,
    help="MLflow store; default sqlite under ./mlruns",
)


def _no_password_on_argv(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A database URL with its password on the command line is readable by every user (ps)."""
    from tlbench.security import SecretError, refuse_password_on_command_line

    if value and ctx.get_parameter_source(param.name or "") == click.core.ParameterSource.COMMANDLINE:
        try:
            refuse_password_on_command_line(f"--{param.name}", value, param.envvar or "")  # type: ignore[arg-type]
        except SecretError as err:
            fail(str(err))
    return value


storage_option = click.option(
    "--storage",
    envvar="TLBENCH_OPTUNA_STORAGE",
    default=None,
    callback=_no_password_on_argv,
    help="Optuna storage: a journal file (default ./mlruns/optuna.journal) or postgresql://... / sqlite:///...",
)
data_dir_option = click.option(
    "--data-dir", envvar="TLBENCH_DATA", default=None, help="dataset cache (default ~/.cache/tlbench/data)"
)
device_option = click.option(
    "--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ..."
)


def check_workers(workers: str) -> None:
    if workers != "auto" and not (workers.isdigit() and int(workers) >= 1):
        fail(f"--workers {workers!r}: give a number of processes (1, 2, ...) or auto")


def load(
    grid: str, select: tuple[str, ...], *, check_backbones: bool = True
) -> tuple[Any, list[Any], list[Any]]:
    """The grid's spec, all its cells, and the selected ones (``api.load_grid``; an empty
    selection is an error)."""
    from tlbench import api

    g = api.load_grid(grid, check_backbones=check_backbones)
    return g.spec, g.cells, g.select(select)


def print_inputs(items: list[Any], title: str) -> None:
    """A grid's datasets and weights: local, generated, to be downloaded, or missing."""
    table = Table(title=title)
    for col in ("kind", "name", "state", "where"):
        table.add_column(col)
    colours = {
        "local": "green",
        "fetched": "green",
        "generated": "cyan",
        "bundled": "cyan",
        "download": "yellow",
        "manual": "magenta",  # placed by hand (torchvision cannot download it)
    }
    for it in items:
        table.add_row(it.kind, it.name, f"[{colours.get(it.state, 'red')}]{it.state}[/]", it.where)
    console.print(table)
