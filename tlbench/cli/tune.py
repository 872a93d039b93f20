"""``tlbench tune``: an Optuna study of N trials per (selected) cell, shared by any number of
processes or machines on the same storage."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from tlbench.cli import common


def _print_summaries(grid_name: str, summaries: list) -> None:
    """One row per study: trials by state, the best value and parameters."""
    table = Table(title=f"tuning: grid {grid_name}")
    for col in ("cell", "complete", "pruned", "failed", "best val_acc", "best lr", "best batch", "study"):
        table.add_column(col, overflow="fold")
    for s in summaries:
        table.add_row(
            s.cell.name,
            str(s.complete),
            str(s.pruned),
            str(s.failed),
            f"{s.best_value:.4f}" if s.best_value is not None else "-",
            f"{s.best_params['lr']:.3g}" if s.best_params else "-",
            str(s.best_params.get("batch_size", "-")),
            s.study,
        )
    common.console.print(table)


@click.command()
@common.grid_option
@common.select_option
@common.tracking_option
@common.storage_option
@common.data_dir_option
@click.option("--trials", "-n", type=click.IntRange(min=1), required=True, help="trials per cell's study")
@click.option(
    "--pruner",
    type=click.Choice(["median", "halving", "hyperband", "none"]),
    default="median",
    show_default=True,
    help="stops hopeless trials early (halving = successive halving)",
)
@click.option(
    "--seed", type=int, default=None, help="sampler seed (leave unset when several processes share a study)"
)
@common.device_option
@click.option(
    "--workers",
    "-w",
    default="1",
    show_default=True,
    help="tuning processes sharing each study: N, or auto = one per visible GPU",
)
@common.clean_errors
def tune(
    grid: str,
    select: tuple[str, ...],
    tracking_uri: str | None,
    storage: str | None,
    data_dir: str | None,
    trials: int,
    pruner: str,
    seed: int | None,
    device: str,
    workers: str,
) -> None:
    """Tune lr and batch size of each (selected) cell with an Optuna study of N trials.

    Several processes or machines given the same --storage share each study: together they run
    exactly N trials. An interrupted study continues where it stopped.
    """
    from tlbench import api

    common.check_workers(workers)
    g = api.load_grid(grid)
    try:
        summaries = api.tune_grid(
            g,
            trials=trials,
            select=select,
            pruner=pruner,
            seed=seed,
            tracking_uri=tracking_uri,
            storage=storage,
            data_dir=data_dir,
            device=device,
            workers=workers,
            console=common.err_console,
        )
    except KeyboardInterrupt:
        common.err_console.print(
            "[yellow]interrupted:[/] the current trial is failed and queued again; "
            "run the same command to continue the study"
        )
        sys.exit(130)
    if not summaries:
        return
    _print_summaries(g.name, summaries)
    common.err_console.print(
        f"train with the best values: tlbench run --grid {grid} --tuned", highlight=False
    )
