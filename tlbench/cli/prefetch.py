"""``tlbench prefetch``: download a grid's datasets and hub weights where there is internet."""

from __future__ import annotations

import click

from tlbench.cli import common


@click.command()
@common.grid_option
@common.select_option
@common.data_dir_option
@common.clean_errors
def prefetch(grid: str, select: tuple[str, ...], data_dir: str | None) -> None:
    """Download every dataset and pretrained weight a grid needs (run it where there is internet)."""
    from tlbench import api

    g = api.load_grid(grid)
    results = api.prefetch_grid(g, select=select, data_dir=data_dir)
    common.print_inputs(results, f"grid {g.name}: inputs")
    failed = [r for r in results if not r.ok]
    if failed:
        common.fail(f"{len(failed)} input(s) could not be fetched (see above)", code=1)
