"""``tlbench tune``: an Optuna study of N trials per (selected) cell, shared by any number of
processes or machines on the same storage."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from tlbench.cli import common


def _helper_argv(
    grid: str, select: tuple[str, ...], trials: int, pruner: str, **options: str | None
) -> list[str]:
    """The same ``tlbench tune`` command, for the helper processes of ``--workers N``; the storage
    URL (it may hold a database password) goes through their environment instead."""
    argv = ["tune", "--grid", grid, "--trials", str(trials), "--pruner", pruner]
    for pattern in select:
        argv += ["--select", pattern]
    for flag, value in options.items():
        if value:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    return argv


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
    from tlbench.cells import with_dependencies
    from tlbench.dburl import redact
    from tlbench.executor import RunOptions
    from tlbench.interrupts import sigterm_as_interrupt
    from tlbench.tracking import Tracker
    from tlbench.tracking.access import check_access
    from tlbench.tune import open_storage, resolve_storage_url, start_helpers, stop_helpers, tune_grid
    from tlbench.tune.driver import one_per_configuration, say_untunable, split_untunable
    from tlbench.tune.storage import STORAGE_ENV

    spec, cells, chosen = common.load(grid, select)
    chosen, untunable = split_untunable(chosen)
    say_untunable(untunable, common.err_console)
    if not chosen:
        common.err_console.print("nothing to tune among the selected cells", highlight=False)
        return
    common.check_workers(workers)
    sigterm_as_interrupt()
    url = resolve_storage_url(storage)
    open_storage(url)  # a bad URL fails here, before any training
    tracker = Tracker(tracking_uri)
    options = RunOptions(tracker.uri, check_access(tracker, spec.name), data_dir=data_dir, device=device)
    argv = _helper_argv(
        grid, select, trials, pruner, tracking_uri=tracking_uri, data_dir=data_dir, device=device
    )
    helpers = start_helpers(workers, argv, seed, common.err_console, {STORAGE_ENV: url})  # same studies
    common.err_console.print(
        f"tuning {len(one_per_configuration(chosen))} configuration(s) of grid [bold]{spec.name}[/], "
        f"{trials} trials each → studies in "
        f"{redact(url)}, runs in MLflow {tracker.uri}",
        highlight=False,
    )
    chosen_ids = {c.id for c in chosen}
    sources = [c for c in with_dependencies(chosen, cells) if c.id not in chosen_ids]
    try:
        summaries = tune_grid(
            chosen,
            sources,
            tracker=tracker,
            options=options,
            trials=trials,
            pruner=pruner,
            seed=seed,
            storage_url=url,
            helpers=helpers,
            console=common.err_console,
        )
    except KeyboardInterrupt:
        stop_helpers(helpers)
        common.err_console.print(
            "[yellow]interrupted:[/] the current trial is failed and queued again; "
            "run the same command to continue the study"
        )
        sys.exit(130)
    _print_summaries(spec.name, summaries)
    common.err_console.print(
        f"train with the best values: tlbench run --grid {grid} --tuned", highlight=False
    )
