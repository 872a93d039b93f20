"""``tlbench grids`` (the shipped grids) and ``tlbench init`` (a starter grid in this folder)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from tlbench.cli import common


@click.command("grids")
@common.clean_errors
def grids_cmd() -> None:
    """List the grids shipped with tlbench (and this folder's benchmarks/grids/): name, cells, what."""
    from tlbench.cells import expand
    from tlbench.spec import GRIDS_DIR, load_grid
    from tlbench.spec.load import shipped_grids

    found = dict(shipped_grids())
    local = Path.cwd() / GRIDS_DIR
    found.update({p.stem: p for p in sorted(local.glob("*.yaml"))} if local.is_dir() else {})
    table = Table(title="grids (--grid NAME)")
    for col in ("name", "cells", "configurations", "description", "file"):
        table.add_column(col, overflow="fold")
    for name, path in sorted(found.items()):
        spec = load_grid(path)
        cells = expand(spec, path)
        configs = len({c.config_id for c in cells})
        table.add_row(name, str(len(cells)), str(configs), spec.description or "", str(path))
    common.console.print(table)


@click.command("init")
@click.argument("name", default="mygrid")
@common.clean_errors
def init_cmd(name: str) -> None:
    """Write NAME.yaml (default mygrid.yaml): a commented starter grid, valid as written."""
    from tlbench.spec.starter import write_starter

    path = write_starter(name, Path.cwd())
    common.err_console.print(
        f"wrote {path.name}: `tlbench ls --grid {path.name}`, then `tlbench run --grid {path.name}`",
        highlight=False,
    )
