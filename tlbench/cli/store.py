"""``tlbench store``: keep a copy of the embedded store, put one back, look for damage."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.table import Table

from tlbench.cli import common


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _runs(counts: dict[str, int]) -> str:
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return _n(sum(counts.values()), "run") + (f" ({parts})" if parts else "")


@click.group()
def store() -> None:
    """The embedded store (./mlruns/mlflow.db): backup, restore, check. See docs/store.md."""


@store.command("backup")
@click.option(
    "--to",
    "to",
    default=None,
    help="new folder for the copy (default: beside the store's folder, e.g. ./mlruns-backup-YYYYmmdd-HHMMSS)",
)
@click.option("--artifacts", is_flag=True, help="copy the artifacts too (best checkpoints, plots, reports)")
@common.tracking_option
@common.clean_errors
def backup_cmd(to: str | None, artifacts: bool, tracking_uri: str | None) -> None:
    """A consistent copy of the store (SQLite's online backup API: safe while runs write)."""
    from tlbench.api.store import backup_store

    copy = backup_store(to=to, artifacts=artifacts, tracking_uri=tracking_uri)
    arts = "" if copy.artifact_files is None else f" and {copy.artifact_files} artifact files"
    click.echo(f"backed up {_runs(copy.runs)}{arts} to {copy.folder}")
    click.echo(f"put it back with: tlbench store restore {copy.folder}")


@store.command("restore")
@click.argument("backup", type=click.Path())
@click.option("--force", is_flag=True, help="replace a store that reads as sound (it is kept aside)")
@common.tracking_option
@common.clean_errors
def restore_cmd(backup: str, force: bool, tracking_uri: str | None) -> None:
    """Put BACKUP (a folder `tlbench store backup` made, or a .db file) back as the store."""
    from tlbench.api.store import restore_store

    copy = restore_store(backup, force=force, tracking_uri=tracking_uri)
    click.echo(f"restored {_runs(copy.runs)} into {copy.db}")
    if copy.kept_aside is not None:
        click.echo(f"the file it replaced is kept as {copy.kept_aside}")
    if copy.artifact_files is not None:
        click.echo(f"{copy.artifact_files} artifact files added from the backup")


@store.command("check")
@common.tracking_option
@click.option(
    "--checkpoint-dir",
    envvar="TLBENCH_CHECKPOINTS",
    default=None,
    help="per-epoch checkpoints, as given to tlbench run (default ./mlruns/checkpoints)",
)
@common.clean_errors
def check_cmd(tracking_uri: str | None, checkpoint_dir: str | None) -> None:
    """Integrity, stale RUNNING runs, orphaned checkpoints (read only): exit 0 healthy, 1 not."""
    from tlbench.api.store import check_store

    health = check_store(tracking_uri=tracking_uri, checkpoint_dir=checkpoint_dir)
    _show(health)
    sys.exit(0 if health.healthy else 1)


def _show(health: Any) -> None:
    from tlbench.dburl import redact

    seen = f"{_n(health.runs_running, 'RUNNING run')} and {_n(health.checkpoints, 'checkpoint folder')} looked at"
    if health.healthy:
        common.console.print(f"[green]healthy[/]: {redact(health.store)} ({seen})", highlight=False)
        return
    table = Table(title=f"{redact(health.store)}: {_n(len(health.problems), 'problem')} ({seen})")
    for col in ("problem", "what", "found", "to do"):
        table.add_column(col, overflow="fold")
    for p in health.problems:
        table.add_row(f"[red]{p.kind}[/]", p.subject, p.detail, p.fix)
    common.console.print(table)
