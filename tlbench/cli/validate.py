"""``tlbench validate``: every name, dataset and weight file of a grid resolves, without training."""

from __future__ import annotations

import click

from tlbench.cli import common


@click.command()
@common.grid_option
@common.select_option
@common.data_dir_option
@click.option(
    "--build/--no-build", default=True, help="instantiate each backbone (random init) to check it builds"
)
@common.clean_errors
def validate(grid: str, select: tuple[str, ...], data_dir: str | None, build: bool) -> None:
    """Check that every entry of a grid resolves, without training."""
    from tlbench.preflight.prefetch import status
    from tlbench.preflight.validate import validate_cells

    spec, cells, chosen = common.load(grid, select)
    common.print_inputs(status(chosen, data_dir), f"grid {spec.name}: inputs (local, or to be downloaded)")
    problems = validate_cells(chosen, data_dir=data_dir, build=build, console=common.console)
    if problems:
        for p in problems:
            common.err_console.print(f"[red]✗[/] {p}", highlight=False)
        common.fail(f"grid {spec.name!r}: {len(problems)} problem(s)")
    common.console.print(f"[green]grid {spec.name!r} is valid:[/] {len(chosen)} cells")
