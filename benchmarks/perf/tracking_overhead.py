"""MLflow tracking overhead: the same cells trained with and without tracking, alternated.

Tracked = ``executor.run_cells`` (what ``tlbench run`` does) into an embedded SQLite store:
params, per-epoch metrics, final metrics, the cell YAML, learning curves, confusion matrix,
per-class CSV and best checkpoint, the artifacts written on a background thread while the next
cell trains. Bare = ``train.fit`` on each cell. The store is created and warmed first, so the
one-time schema creation is not counted; bare and tracked alternate to share the machine's drift.

    python benchmarks/perf/tracking_overhead.py [--device cuda] [--repeats 2]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from _common import device_name, make_cell, timed
from rich.console import Console

from tlbench.data import load_dataset
from tlbench.executor import RunOptions
from tlbench.executor.local import run_cells
from tlbench.tracking import Tracker
from tlbench.train import fit, pick_device


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--subset", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cells", type=int, default=3)
    args = ap.parse_args()
    device = pick_device(args.device)
    print(f"# device: {device_name(device)}")
    cells = [
        make_cell(
            dataset="fashion_mnist",
            augmentation="basic",
            image_size=32,
            epochs=args.epochs,
            subset=args.subset,
            seed=seed,
        )
        for seed in range(args.cells)
    ]
    data = load_dataset("fashion_mnist", subset=args.subset)
    quiet = Console(file=io.StringIO())
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        exp = tracker.experiment_id("perf")
        warm = make_cell(dataset="digits", epochs=1, image_size=8)
        options = RunOptions(tracker.uri, exp, device=str(device))
        run_cells([warm], tracker, options, console=quiet)  # schema, imports: paid once
        bare, tracked = [], []
        for _ in range(args.repeats):
            bare.append(timed(lambda: [fit(c, data, device=device) for c in cells], device)[0])
            t, outcomes = timed(
                lambda: run_cells(cells, tracker, replace(options, force=True), console=quiet), device
            )
            assert all(o.status == "FINISHED" for o in outcomes), [o.reason for o in outcomes]
            tracked.append(t)
    b, t = sum(bare) / len(bare), sum(tracked) / len(tracked)
    print(
        json.dumps(
            {
                "cells": len(cells),
                "grid_s_bare": [round(x, 2) for x in bare],
                "grid_s_tracked": [round(x, 2) for x in tracked],
                "overhead": round(t / b - 1, 4),
                "overhead_s_per_cell": round((t - b) / len(cells), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
