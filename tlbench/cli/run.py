"""``tlbench run``: train every (selected) cell of a grid and track it in MLflow."""

from __future__ import annotations

import sys
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
    "--stack/--no-stack",
    default=True,
    show_default=True,
    help="train SGD probe cells that read the same cached features as one stack of heads, one "
    "pass of the features per epoch (each still its own run, same results)",
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
    "--order-by",
    default=None,
    metavar="SCORE",
    help="run the cells in the order a transferability score predicts (best backbone first per "
    "dataset; scores missing from the store are computed first, as tlbench rank does)",
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
    stack: bool,
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
    order_by: str | None,
    require_complete: bool,
) -> None:
    """Train every (selected) cell of a grid and track it in MLflow."""
    from tlbench import api

    common.check_workers(workers)
    try:
        result = api.run_grid(
            grid,
            select=select,
            tracking_uri=tracking_uri,
            data_dir=data_dir,
            device=device,
            force=force,
            compile=compile_,
            feature_cache=feature_cache,
            stack=stack,
            workers=workers,
            cells_per_gpu=cells_per_gpu,
            retries=retries,
            backend=backend,
            address=address,
            checkpoint_dir=checkpoint_dir,
            tuned=tuned,
            race=race,
            race_by=[a.strip() for a in race_by.split(",") if a.strip()] if race_by else None,
            storage=storage,
            system_metrics=system_metrics,
            order_by=order_by,
            console=common.err_console,
        )
    except KeyboardInterrupt:
        from tlbench.tracking.process import stop_writers

        common.err_console.print(
            "[yellow]interrupted:[/] the current run is marked KILLED; run again to continue"
        )
        stop_writers()
        sys.exit(130)
    from tlbench.report import render_summary  # after the run: scipy's import must not delay the workers

    render_summary(result.frame(), common.console, title=f"grid {result.grid}")
    _say_same_settings([o.cell for o in result.outcomes])
    _conclude(result, require_complete)


def _say_same_settings(cells: list[Any]) -> None:
    """Cells that coincide are one run: the summary's rows counted as runs, and which they are."""
    from tlbench.cells.duplicates import runs_needed, runs_text, said, same_settings

    groups = same_settings(cells)
    if groups:
        common.console.print(
            f"{len(cells)} cells, {runs_text(runs_needed(cells))}: cells whose settings coincide are one run",
            highlight=False,
        )
        for line in said(groups, limit=5):
            common.console.print(f"  {line}", highlight=False, soft_wrap=True)


def _conclude(result: Any, require_complete: bool) -> None:
    """Say which cells other live processes hold; exit 1 if any failed, 3 with
    ``--require-complete`` if some are held elsewhere, else 0 (concurrent workers rely on it)."""
    elsewhere = result.elsewhere
    if elsewhere:
        more = f", ... ({len(elsewhere) - 10} more)" if len(elsewhere) > 10 else ""
        common.err_console.print(
            f"[yellow]↷ {len(elsewhere)} cell(s) left to other live processes[/] (the grid is complete "
            f"once they finish): {', '.join(elsewhere[:10])}{more}",
            highlight=False,
        )
    if result.failed:
        n = len(result.outcomes)
        common.fail(f"{len(result.failed)} of {n} cells failed (reasons above and in MLflow)", code=1)
    if elsewhere and require_complete:
        sys.exit(INCOMPLETE_EXIT)
