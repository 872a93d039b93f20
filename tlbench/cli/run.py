"""``tlbench run``: train every (selected) cell of a grid and track it in MLflow."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from tlbench.cli import common

INCOMPLETE_EXIT = 3  # --require-complete: some cells are held by other live processes


@click.command()
@common.grid_option
@common.select_option
@common.tracking_option
@common.data_dir_option
@click.option("--force", is_flag=True, help="re-run cells that already have a FINISHED run")
@common.device_option
@click.option(
    "--compile", "compile_", is_flag=True, help="torch.compile each model (worth it for long GPU cells)"
)
@click.option(
    "--feature-cache/--no-feature-cache",
    default=True,
    show_default=True,
    help="train frozen-backbone heads on features computed once (deterministic augmentation only)",
)
@click.option(
    "--workers",
    "-w",
    default="1",
    show_default=True,
    help="worker processes: N, or auto = one per visible GPU (1 = this process, no pool)",
)
@click.option(
    "--cells-per-gpu",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="pack k small cells per GPU",
)
@click.option(
    "--retries",
    default=2,
    show_default=True,
    type=click.IntRange(min=0),
    help="re-runs of a cell whose worker died",
)
@click.option(
    "--backend",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="ray: each cell a Ray task on a cluster (pip install 'tlbench[ray]')",
)
@click.option(
    "--address", default=None, help="Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default auto)"
)
@click.option(
    "--checkpoint-dir",
    envvar="TLBENCH_CHECKPOINTS",
    default=None,
    help="per-epoch checkpoints (default ./mlruns/checkpoints; a shared path for several machines)",
)
@click.option(
    "--tuned",
    is_flag=True,
    help="train each cell with its Optuna study's best lr and batch size (a 'tuned' run beside the plain one)",
)
@click.option(
    "--race/--no-race",
    "race",
    default=None,
    help="train rung by rung and drop the configurations beaten with 95 % confidence "
    "(default: the grid's race: key; --no-race continues raced-out cells)",
)
@click.option(
    "--race-by",
    default=None,
    help="comma list of the axes a comparison group shares (default dataset,backbone,strategy; implies --race)",
)
@common.storage_option
@click.option(
    "--system-metrics/--no-system-metrics",
    default=True,
    show_default=True,
    help="MLflow's system metrics (CPU, memory, GPU) on every cell run",
)
@click.option(
    "--require-complete",
    is_flag=True,
    help=f"exit {INCOMPLETE_EXIT} when cells are left to other live processes (default: 0, as workers need)",
)
@common.clean_errors
def run(
    grid: str,
    select: tuple[str, ...],
    tracking_uri: str | None,
    data_dir: str | None,
    force: bool,
    device: str,
    compile_: bool,
    feature_cache: bool,
    workers: str,
    cells_per_gpu: int,
    retries: int,
    backend: str,
    address: str | None,
    checkpoint_dir: str | None,
    tuned: bool,
    race: bool | None,
    race_by: str | None,
    storage: str | None,
    system_metrics: bool,
    require_complete: bool,
) -> None:
    """Train every (selected) cell of a grid and track it in MLflow."""
    from tlbench.cells import with_dependencies
    from tlbench.executor import RunOptions, execute
    from tlbench.interrupts import sigterm_as_interrupt
    from tlbench.report import render_summary, summary_frame
    from tlbench.tracking import Tracker
    from tlbench.tracking.inputs import SYSTEM_METRICS_ENV
    from tlbench.tracking.summaries import update_summaries
    from tlbench.tune import resolve_storage_url, run_tuned

    spec, cells, chosen = common.load(grid, select)
    common.check_workers(workers)
    os.environ[SYSTEM_METRICS_ENV] = str(system_metrics).lower()  # MLflow's own switch; workers inherit it
    sigterm_as_interrupt()
    todo = with_dependencies(chosen, cells)
    extra = len(todo) - len(chosen)
    plan = _race_plan(spec, todo, race, race_by, grid, tuned)
    tracker = Tracker(tracking_uri)
    experiment_id = _experiment(tracker, spec.name, cells)
    options = RunOptions(
        tracker.uri,
        experiment_id,
        data_dir=data_dir,
        device=device,
        checkpoint_dir=checkpoint_dir,
        grid_file=str(Path(grid)),
        force=force,
        compile=compile_,
        cache_features=feature_cache,
        race=plan,
    )
    common.err_console.print(
        f"grid [bold]{spec.name}[/]: {len(todo)} cells"
        + (f" ({extra} added as cell: sources)" if extra else "")
        + f" → MLflow {tracker.uri} (experiment {spec.name!r})"
        + (f"; racing by {', '.join(plan.by)}" if plan else ""),
        highlight=False,
    )
    backend_kw = dict(
        backend=backend, workers=workers, cells_per_gpu=cells_per_gpu, retries=retries, address=address
    )
    try:
        if tuned:
            url = resolve_storage_url(storage)
            outcomes = run_tuned(chosen, todo, tracker, options, url, grid, common.err_console, **backend_kw)
        else:
            outcomes = execute(todo, tracker, options, console=common.err_console, **backend_kw)
    except KeyboardInterrupt:
        common.err_console.print(
            "[yellow]interrupted:[/] the current run is marked KILLED; run again to continue"
        )
        sys.exit(130)
    touched = {o.cell.config_id for o in outcomes}
    update_summaries(tracker, options.experiment_id, [c for c in cells if c.config_id in touched])
    df = summary_frame((o.cell, o.status, o.metrics, o.reason) for o in outcomes)
    render_summary(df, common.console, title=f"grid {spec.name}")
    _conclude(outcomes, require_complete)


def _experiment(tracker: Any, name: str, cells: list[Any]) -> str:
    """The grid's experiment, with the saved view of its runs table that ``tlbench ui`` opens."""
    from tlbench.tracking.access import check_access

    experiment_id = check_access(tracker, name)  # a shared server: credentials and EDIT, before any cell
    tracker.ensure_view(experiment_id, cells)
    return experiment_id


def _conclude(outcomes: list[Any], require_complete: bool) -> None:
    """Say which cells other live processes hold; exit 1 if any failed, 3 with
    ``--require-complete`` if some are held elsewhere, else 0 (concurrent workers rely on it)."""
    from tlbench.executor.runner import ELSEWHERE

    failed = [o for o in outcomes if o.status == "FAILED"]
    elsewhere = [o.cell.name for o in outcomes if o.status == "SKIPPED" and o.reason == ELSEWHERE]
    if elsewhere:
        more = f", ... ({len(elsewhere) - 10} more)" if len(elsewhere) > 10 else ""
        common.err_console.print(
            f"[yellow]↷ {len(elsewhere)} cell(s) left to other live processes[/] (the grid is complete "
            f"once they finish): {', '.join(elsewhere[:10])}{more}",
            highlight=False,
        )
    if failed:
        common.fail(f"{len(failed)} of {len(outcomes)} cells failed (reasons above and in MLflow)", code=1)
    if elsewhere and require_complete:
        sys.exit(INCOMPLETE_EXIT)


def _race_plan(
    spec: Any, cells: list[Any], race: bool | None, race_by: str | None, grid: str, tuned: bool
) -> Any:
    """The race this run applies, or None: ``--race``/``--no-race`` over the grid's ``race:``."""
    from tlbench.executor.options import RacePlan
    from tlbench.executor.racing import check_plan
    from tlbench.spec.race import RACE_AXES

    by = tuple(a.strip() for a in race_by.split(",") if a.strip()) if race_by else None
    for axis in by or ():
        if axis not in RACE_AXES:
            common.fail(f"--race-by: unknown axis {axis!r} (valid: {', '.join(RACE_AXES)})")
    on = race if race is not None else bool(by) or (spec.race is not None and spec.race.enabled)
    if not on:
        return None
    if tuned:
        common.fail("--race applies to plain runs; tuned runs (--tuned) train every cell to the end")
    plan = RacePlan.from_config(spec.race, by)
    check_plan(cells, plan, grid)
    return plan
