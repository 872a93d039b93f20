"""``tlbench prefetch``: download a grid's datasets and hub weights where there is internet."""

from __future__ import annotations

import click

from tlbench.cli.common import (
    clean_errors,
    data_dir_option,
    fail,
    grid_option,
    load,
    print_inputs,
    select_option,
)


@click.command()
@grid_option
@select_option
@data_dir_option
@clean_errors
def prefetch(grid: str, select: tuple[str, ...], data_dir: str | None) -> None:
    """Download every dataset and pretrained weight a grid needs (run it where there is internet)."""
    from tlbench.prefetch import fetch

    spec, _, chosen = load(grid, select)
    results = fetch(chosen, data_dir)
    print_inputs(results, f"grid {spec.name}: inputs")
    failed = [r for r in results if not r.ok]
    if failed:
        fail(f"{len(failed)} input(s) could not be fetched (see above)", code=1)
