"""``tlbench validate``: every name, dataset and weight file of a grid resolves, without training."""

from __future__ import annotations

import click

from tlbench.cli.common import (
    clean_errors,
    console,
    data_dir_option,
    err_console,
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
@click.option(
    "--build/--no-build", default=True, help="instantiate each backbone (random init) to check it builds"
)
@clean_errors
def validate(grid: str, select: tuple[str, ...], data_dir: str | None, build: bool) -> None:
    """Check that every entry of a grid resolves, without training."""
    from tlbench.prefetch import status
    from tlbench.validate import validate_cells

    spec, cells, chosen = load(grid, select)
    print_inputs(status(chosen, data_dir), f"grid {spec.name}: inputs (local, or to be downloaded)")
    problems = validate_cells(chosen, data_dir=data_dir, build=build, console=console)
    if problems:
        for p in problems:
            err_console.print(f"[red]✗[/] {p}", highlight=False)
        fail(f"grid {spec.name!r}: {len(problems)} problem(s)")
    console.print(f"[green]grid {spec.name!r} is valid:[/] {len(chosen)} cells")
