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
    from tlbench import api
    from tlbench.cells.duplicates import runs_needed, runs_text, said, same_settings

    g = api.load_grid(grid)
    inputs, problems = api.validate_grid(
        g, select=select, data_dir=data_dir, build=build, console=common.console
    )
    common.print_inputs(inputs, f"grid {g.name}: inputs (local, or to be downloaded)")
    if problems:
        for p in problems:
            common.err_console.print(f"[red]✗[/] {p}", highlight=False)
        common.fail(f"grid {g.name!r}: {len(problems)} problem(s)")
    chosen = g.select(select)
    groups = same_settings(chosen)
    runs = (
        f" making {runs_text(runs_needed(chosen))} (cells whose settings coincide share one)"
        if groups
        else ""
    )
    common.console.print(f"[green]grid {g.name!r} is valid:[/] {len(chosen)} cells{runs}", highlight=False)
    for line in said(groups):
        common.console.print(f"  {line}", highlight=False, soft_wrap=True)
