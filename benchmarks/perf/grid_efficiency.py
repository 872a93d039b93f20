"""Grid efficiency: how much of its workers' time a grid spends in training steps (issue #28).

Runs ``tlbench run --grid G --workers N`` into a fresh store (a subprocess, timed from start to
exit: start-up, the source cells and the summary included), then reads the store itself and
prints:

- the wall time, the workers, and the sums over the grid's cell runs of ``train_time_s`` (the
  training steps), ``device_s`` (a cell's time on its device) and ``time.wall_s`` (a cell's whole
  attempt, claim to FINISHED), each as a share of workers × wall;
- where the rest went, by phase, from the ``time.<phase>_s`` metrics every cell run records
  (``tlbench.train.timings``), and the time outside any cell (process start-up, workers waiting
  for a source cell or for the last cells, the summary).

    python benchmarks/perf/grid_efficiency.py [--grid smoke] [--workers 2] [--store URI] [-- extra run args]

With ``--store`` an existing store is read instead of running (``--wall`` then gives the wall
time of the run that filled it, if known).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter

from tlbench.spec import load_grid
from tlbench.tracking import Tracker, tags

GROUPS = {  # phase -> what the breakdown calls it
    "train": "training steps (epochs, a probe's sweep)",
    "features": "frozen-backbone features (store read / extraction)",
    "eval": "evaluation (val per epoch, test, best-epoch copy)",
    "checkpoint": "per-epoch checkpoints",
    "build": "model build + weights load",
    "weights": "source checkpoint download (cell:/run:)",
    "data": "dataset load",
    "claim": "claims (exactly-once)",
    "open": "MLflow run creation (params, tags, inputs)",
    "track": "MLflow per-epoch metrics",
    "finish": "MLflow final metrics + artifacts + FINISHED",
    "other": "in a cell, in no phase",
}


def run_grid(grid: str, store: str, workers: int, extra: list[str]) -> tuple[float, float]:
    """Wall seconds of ``tlbench run`` from start to exit, and its start (unix time)."""
    cmd = [sys.executable, "-m", "tlbench.cli", "run", "--grid", grid, "--tracking-uri", store]
    cmd += ["--workers", str(workers), *extra]
    started, t0 = time.time(), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0, started


def cell_runs(store: str, grid: str) -> list:
    """The grid's cell runs (not claims, summaries or rank runs), every status."""
    tracker = Tracker(store)
    runs = tracker.runs(tracker.experiment_id(load_grid(grid).name))
    return [r for r in runs if tags.CELL_ID in r.data.tags and not r.data.tags.get(tags.VARIANT)]


def phase_sums(store: str, runs: list) -> tuple[Counter, int]:
    """Σ over runs of every ``time.*`` metric over every attempt (a resumed run logs one per attempt)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    total: Counter = Counter()
    attempts = 0
    for r in runs:
        keys = [k for k in r.data.metrics if k.startswith("time.")]
        if not keys:
            continue
        n = len(client.get_metric_history(r.info.run_id, "time.wall_s"))
        attempts += n
        for k in keys:
            total[k] += (
                r.data.metrics[k]
                if n <= 1
                else sum(m.value for m in client.get_metric_history(r.info.run_id, k))
            )
    return total, attempts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="smoke")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--store", default=None, help="read this store instead of running the grid")
    ap.add_argument("--wall", type=float, default=None, help="with --store: the run's wall seconds")
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"]
    if args.store:
        store, wall, started = args.store, args.wall, None
    else:
        tmp = tempfile.mkdtemp(prefix="tlbench-efficiency-")
        store = f"sqlite:///{tmp}/mlflow.db"
        os.environ.setdefault("TLBENCH_CHECKPOINTS", f"{tmp}/checkpoints")
        os.environ.setdefault("TLBENCH_FEATURE_STORE", f"{tmp}/features")
        wall, started = run_grid(args.grid, store, args.workers, extra)
    runs = cell_runs(store, args.grid)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    m = [r.data.metrics for r in finished]
    train = sum(x.get("train_time_s", 0.0) for x in m)
    device = sum(x.get("device_s", 0.0) for x in m)
    phases, attempts = phase_sums(store, runs)
    cell_wall = phases.get("time.wall_s", 0.0)
    starts = [r.info.start_time / 1000 for r in runs]
    ends = [r.info.end_time / 1000 for r in runs if r.info.end_time]
    span = (max(ends) - min(starts)) if starts and ends else float("nan")
    wall = wall or span
    budget = args.workers * wall
    print(f"grid {args.grid}: {len(finished)} cells FINISHED of {len(runs)} runs ({attempts} attempts timed)")
    print(f"`tlbench run` wall {wall:.1f} s with {args.workers} workers: {budget:.1f} worker-seconds")
    print(f"first cell start to last cell end: {span:.1f} s")
    if started is not None and starts and ends:
        print(
            f"  start-up (process start to the first cell's run): {min(starts) - started:.1f} s; "
            f"after the last cell's end to exit: {started + wall - max(ends):.1f} s"
        )
    for name, value in (
        ("Σ train_time_s", train),
        ("Σ device_s", device),
        ("Σ per-cell wall (time.wall_s)", cell_wall),
    ):
        print(f"  {name:32s} {value:8.1f} s  {value / budget:6.1%} of workers × wall")
    print(f"\nwhere the {budget:.1f} worker-seconds went:")
    rows = [(GROUPS.get(k[5:-2], k), v) for k, v in phases.items() if k != "time.wall_s"]
    rows.append(("outside any cell (start-up, waiting, summary)", max(0.0, budget - cell_wall)))
    for label, v in sorted(rows, key=lambda kv: -kv[1]):
        print(f"  {label:52s} {v:8.1f} s  {v / budget:6.1%}  {v / max(len(finished), 1):6.3f} s/cell")
    print(f"\ntraining share (Σ train_time_s ÷ workers × wall): {train / budget:.1%}")


if __name__ == "__main__":
    main()
