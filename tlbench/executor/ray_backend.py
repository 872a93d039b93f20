"""Run cells as Ray tasks across a cluster: the multi-node executor, on Ray rather than our own.

Each cell is a task asking for one GPU (``1/k`` of one with ``--cells-per-gpu k``; one CPU on a
cluster without GPUs) and running the same ``run_cell`` as the local executors. Ray re-runs a
task whose node or worker died (``max_retries``); the new attempt waits until the dead attempt's
claim goes stale, then continues its MLflow run from the last epoch's checkpoint (the checkpoint
folder must be on a filesystem every node sees, or the attempt starts the cell over). Tracking
goes to ``--tracking-uri``: on several machines, a ``tlbench server``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from tlbench.executor.cell import CellOutcome
from tlbench.grid import Cell
from tlbench.tracking import Tracker

# settings the driver's environment passes on to the tasks
FORWARDED_ENV = (
    "TLBENCH_DATA",
    "TLBENCH_HEARTBEAT_S",
    "TLBENCH_CLAIM_GRACE_S",
    "TLBENCH_SIMULATE_OOM_ABOVE",
    "HF_HUB_OFFLINE",
    "HF_HOME",
)


def _ray_cell(cell: Cell, cfg: dict[str, Any]) -> CellOutcome:
    """One cell inside a Ray worker."""
    import ray

    from tlbench.executor.cell import run_cell

    gpu = bool(ray.get_gpu_ids())
    if not gpu:
        import torch

        torch.set_num_threads(max(1, int(cfg.get("threads", 1))))
    tracker = Tracker(cfg["uri"])
    outcome = run_cell(
        cell,
        tracker,
        cfg["experiment_id"],
        device="cuda" if gpu else "cpu",
        data_dir=cfg.get("data_dir"),
        grid_file=cfg.get("grid_file"),
        fit_options=cfg.get("fit_options"),
        variant=cfg.get("variant"),
        force=cfg.get("force", False),
        checkpoint_dir=cfg.get("checkpoint_dir"),
        extra_params=(cfg.get("extra_params") or {}).get(cell.id),
        wait_for_claim=True,  # a retried attempt waits out its dead predecessor
    )
    outcome.pending = None
    outcome.reason = outcome.reason + (f" (node {ray.util.get_node_ip_address()})" if outcome.reason else "")
    return outcome


def run_ray(
    cells: list[Cell],
    tracker: Tracker,
    experiment_id: str,
    *,
    address: str | None = None,
    cells_per_gpu: int = 1,
    retries: int = 2,
    force: bool = False,
    data_dir: str | Path | None = None,
    device: str | None = None,
    console: Console | None = None,
    grid_file: str | None = None,
    fit_options: dict[str, Any] | None = None,
    variant: str | None = None,
    extra_params: dict[str, dict[str, Any]] | None = None,
    checkpoint_dir: str | Path | None = None,
) -> list[CellOutcome]:
    """Submit every pending cell as a Ray task (a ``cell:`` source first), gather the outcomes."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("--backend ray needs Ray: pip install 'tlbench[ray]'") from None
    from tlbench.checkpoint import checkpoint_root

    console = console or Console(stderr=True)
    if tracker.uri.startswith("sqlite:") and address not in (None, "auto", "local"):
        console.print(
            "[yellow]an embedded SQLite store is only visible to this machine's nodes; "
            "for a cluster use tlbench server and --tracking-uri http://...[/]"
        )
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    ray.init(
        address=address or "auto",
        ignore_reinit_error=True,
        log_to_driver=False,
        runtime_env={"env_vars": env} if env else None,
    )
    try:
        return _run(
            cells,
            tracker,
            experiment_id,
            ray,
            cells_per_gpu,
            retries,
            force,
            data_dir,
            console,
            grid_file,
            fit_options,
            variant,
            extra_params,
            checkpoint_root(checkpoint_dir).resolve(),
        )
    finally:
        ray.shutdown()


def _run(
    cells,
    tracker,
    experiment_id,
    ray,
    cells_per_gpu,
    retries,
    force,
    data_dir,
    console,
    grid_file,
    fit_options,
    variant,
    extra_params,
    ckpt_root,
) -> list[CellOutcome]:  # noqa: ANN001
    gpus = ray.cluster_resources().get("GPU", 0)
    cfg = {
        "uri": tracker.uri,
        "experiment_id": experiment_id,
        "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
        "grid_file": grid_file,
        "fit_options": fit_options,
        "variant": variant,
        "force": force,
        "checkpoint_dir": str(ckpt_root),
        "extra_params": extra_params,
        "threads": 1,
    }
    task = ray.remote(_ray_cell).options(
        num_cpus=1,
        num_gpus=(1.0 / cells_per_gpu) if gpus else 0,
        max_retries=retries,  # node or worker death: Ray runs the cell again elsewhere
        retry_exceptions=False,  # a cell's own failure is recorded, not retried
    )
    console.print(
        f"Ray cluster: {ray.cluster_resources().get('CPU', 0):g} CPUs, {gpus:g} GPUs, "
        f"{len(ray.nodes())} node(s); {len(cells)} cells"
    )
    finished = {} if force else tracker.finished_runs(experiment_id, variant=variant)
    outcomes: dict[str, CellOutcome] = {}
    waiting: list[Cell] = []
    for cell in cells:
        if cell.id in finished:
            run = finished[cell.id]
            outcomes[cell.name] = CellOutcome(
                cell, "SKIPPED", run.info.run_id, dict(run.data.metrics), "finished"
            )
        else:
            waiting.append(cell)
    in_flight: dict[Any, Cell] = {}
    names = {c.name for c in waiting}
    while waiting or in_flight:
        for cell in list(waiting):
            dep = cell.depends_on
            source = outcomes.get(dep) if dep else None
            if dep and dep in names and source is None:
                continue  # its source is still to run
            waiting.remove(cell)
            if source is not None and source.status not in ("FINISHED", "SKIPPED"):
                outcomes[cell.name] = CellOutcome(cell, "FAILED", reason=f"source cell {dep!r} failed")
                console.print(f"[red]✗[/] {cell.name}  source cell failed")
                continue
            in_flight[task.remote(cell, cfg)] = cell
        if not in_flight:
            continue
        done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
        for ref in done:
            cell = in_flight.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as err:  # retries spent on dead nodes/workers, or Ray itself failed
                outcome = CellOutcome(
                    cell, "FAILED", reason=f"Ray task failed: {type(err).__name__}: {err}"[:500]
                )
            outcomes[cell.name] = outcome
            m = outcome.metrics
            if outcome.status == "FINISHED":
                console.print(
                    f"[green]✓[/] {cell.name}  test_acc {m['test_acc']:.4f}  best_val {m['best_val_acc']:.4f}"
                )
            else:
                console.print(
                    f"[{'yellow' if outcome.status == 'SKIPPED' else 'red'}]"
                    f"{'↷' if outcome.status == 'SKIPPED' else '✗'}[/] {cell.name}  {outcome.reason}"
                )
        time.sleep(0.05)
    return [outcomes[c.name] for c in cells if c.name in outcomes]
