"""Run cells as Ray tasks across a cluster: the multi-node executor, on Ray rather than our own.

Each cell is a task asking for one GPU (``1/k`` of one with ``--cells-per-gpu k``; one CPU on a
cluster without GPUs) and running the same ``run_cell`` as the local executors; the driver
follows the shared policy (``tlbench.executor.policy``). Ray re-runs a task whose node or worker
died (``max_retries``); if the new attempt finds the dead one's claim still fresh, it returns at
once ("running elsewhere") and the *driver* waits for that claim to go stale, then submits the
cell again, which continues its MLflow run from the last epoch's checkpoint (the checkpoint
folder must be on a filesystem every node sees, or the attempt starts the cell over). An
out-of-memory cell is submitted again at half the batch; every cell runs in a fresh worker process
(``max_calls=1``: a few seconds of start-up per cell, all its memory returned). Tracking goes to ``--tracking-uri``: on several machines, a
``tlbench server``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from rich.console import Console

from tlbench.cells import Cell
from tlbench.executor.options import RunOptions
from tlbench.executor.policy import Schedule, Task
from tlbench.executor.runner import OOM_REASON, CellOutcome
from tlbench.tracking import Tracker, heartbeat_interval

# settings the driver's environment passes on to the tasks
FORWARDED_ENV = (
    "TLBENCH_DATA",
    "TLBENCH_HEARTBEAT_S",
    "TLBENCH_CLAIM_GRACE_S",
    "TLBENCH_SIMULATE_OOM_ABOVE",
    "HF_HUB_OFFLINE",
    "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING",  # --no-system-metrics
    "HF_HOME",
)


def _ray_cell(task: Task, options: RunOptions, secrets: dict[str, str] | None = None) -> CellOutcome:
    """One cell inside a Ray worker; ``secrets`` (MLflow's credentials) are a task argument, not
    a ``runtime_env``, which Ray's dashboard shows (the worker process is this cell's alone)."""
    import dataclasses

    import ray

    os.environ.update(secrets or {})

    from tlbench.executor.runner import run_cell

    gpu = bool(ray.get_gpu_ids())
    if not gpu:
        import torch

        torch.set_num_threads(1)
    options = dataclasses.replace(options, device="cuda" if gpu else "cpu")
    outcome = run_cell(
        task.cell,
        Tracker(options.tracking_uri),
        options,
        extra_params=task.params,
        extra_tags=task.tags,
        pause_at=task.pause_at,
    )
    outcome.pending = None
    if outcome.status in ("FAILED", "KILLED") and outcome.reason != OOM_REASON:  # the policy reads that one
        outcome.reason += f" (node {ray.util.get_node_ip_address()})"
    return outcome


def run_ray(
    cells: list[Cell],
    tracker: Tracker,
    options: RunOptions,
    *,
    address: str | None = None,
    cells_per_gpu: int = 1,
    retries: int = 2,
    console: Console | None = None,
) -> list[CellOutcome]:
    """Submit every ready cell as a Ray task (a ``cell:`` source first), gather the outcomes."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("--backend ray needs Ray: pip install 'tlbench[ray]'") from None
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
    from tlbench.tracking.access import credentials

    secrets = ray.put(credentials())  # one copy in the object store, resolved in each task
    try:
        return _drive(ray, cells, tracker, options.resolved(), cells_per_gpu, retries, console, secrets)
    finally:
        ray.shutdown()


def _drive(
    ray: Any,
    cells: list[Cell],
    tracker: Tracker,
    options: RunOptions,
    cells_per_gpu: int,
    retries: int,
    console: Console,
    secrets: Any = None,
) -> list[CellOutcome]:
    gpus = ray.cluster_resources().get("GPU", 0)
    remote = ray.remote(
        num_cpus=1,
        num_gpus=(1.0 / cells_per_gpu) if gpus else 0,
        max_calls=1,  # a fresh worker process per cell: all its (CUDA) memory freed, an OOM retry clean
        max_retries=retries,  # node or worker death: Ray runs the cell again elsewhere
        retry_exceptions=False,  # a cell's own failure is recorded, not retried
    )(_ray_cell)
    console.print(
        f"Ray cluster: {ray.cluster_resources().get('CPU', 0):g} CPUs, {gpus:g} GPUs, "
        f"{len(ray.nodes())} node(s); {len(cells)} cells"
    )
    schedule = Schedule(cells, tracker, options, console.print)
    in_flight: dict[Any, tuple[Task, float]] = {}
    last_poll = 0.0
    while schedule.active:
        while (task := schedule.next_task()) is not None:
            in_flight[remote.remote(task, options, secrets)] = (task, time.time())
        if schedule.elsewhere and time.time() - last_poll > min(2.0, heartbeat_interval()):
            schedule.poll_elsewhere()
            last_poll = time.time()
        if not in_flight:
            time.sleep(0.2)
            continue
        done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
        for ref in done:
            task, started = in_flight.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as err:  # retries spent on dead nodes/workers, or Ray itself failed
                reason = f"Ray task failed: {type(err).__name__}: {err}"[:500]
                outcome = CellOutcome(task.cell, "FAILED", reason=reason)
            schedule.record(task, outcome, time.time() - started)
    return schedule.results()
