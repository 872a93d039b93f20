"""Stacked probe heads (issue #28): a probe grid trained as one stack vs one cell at a time.

Workload (named, so the ratio can be checked): a ``test_resnet`` pretrained here on procedural
fractals (``synthetic``, 20 classes × 100, 32 px, 4 epochs; saved once as a weight file, the
classifier left out), frozen; scikit-learn's ``digits`` at 32 px, ``linear_probe``, ``none``
augmentation, ``--epochs`` epochs, batch 64, cosine; 24 configurations = 3 lr × 2 weight decay ×
2 optimizers (sgd 0.3 / 0.1 / 0.03, adamw 0.01 / 0.003 / 0.001; wd 0 / 5e-4) × 2 seeds. Every
configuration reads the same feature-store entries (the seeds draw their own val carve and
batch order).

Two fresh ``tlbench run`` processes side by side, each with its own MLflow store, feature store
and checkpoint folder: ``--no-stack`` (one cell at a time) and stacked (the default). Prints:

- each process's wall time (start-up to exit) and the ratio;
- the cells' own time: the sum over the runs of ``time.wall_s`` (claim to FINISHED; a stacked
  run's share of its stack), and that ratio; the rest of a process is start-up (imports, the
  grid, the store) and what follows the last cell (artifacts still being written, summaries);
- where the cells' time went, phase by phase (``time.<phase>_s`` summed over the runs);
- per run, the largest absolute difference between the two stores of every logged metric, step
  by step (timings and system metrics left out), and whether every accuracy is identical.

    python benchmarks/perf/stacked_probes.py [--epochs 10] [--workers 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIMED = {"train_time_s", "images_per_s", "device_s", "epoch_time_s", "epoch_images_per_s", "peak_rss_mb"}
SOURCE = {"classes": 20, "train_per_class": 100, "val_per_class": 10, "test_per_class": 10, "image_size": 32}
GRID = """
name: stacked_probes
train: {{epochs: {epochs}, batch_size: 64, image_size: 32, schedule: cosine, seed: 0}}
seeds: 2
datasets: [digits]
backbones: [{{name: test_resnet, weights: "file:{weights}"}}]
strategies: [linear_probe]
augmentations: [none]
optimizers:
{optimizers}
"""
LRS = {"sgd": (0.3, 0.1, 0.03), "adamw": (0.01, 0.003, 0.001)}
WDS = (0.0, 5e-4)


def pretrain(path: Path) -> float:
    """The frozen source: ``test_resnet`` trained from scratch on fractals, saved as a weight file."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import make_cell
    from safetensors.torch import save_file

    from tlbench.data import load_dataset
    from tlbench.train import fit

    cell = make_cell(
        dataset="synthetic",
        params=SOURCE,
        strategy="scratch",
        augmentation="basic",
        epochs=4,
        batch_size=64,
        lr=0.05,
        weight_decay=5e-4,
        image_size=32,
    )
    result = fit(cell, load_dataset("synthetic", params=SOURCE, seed=0))
    state = {k: v.contiguous() for k, v in result.best_state.items() if not k.startswith("fc.")}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return result.test_acc


def grid_text(weights: Path, epochs: int) -> str:
    entries = [
        f"  - {{name: {opt}, label: {opt}-lr{lr:g}-wd{wd:g}, train: {{lr: {lr}, weight_decay: {wd}}}}}"
        for opt, lrs in LRS.items()
        for lr in lrs
        for wd in WDS
    ]
    return GRID.format(epochs=epochs, weights=weights, optimizers="\n".join(entries))


def run(grid: Path, work: Path, stack: bool, workers: int) -> tuple[str, float]:
    """One ``tlbench run`` into fresh stores of its own; (its MLflow URI, wall seconds)."""
    mode = work / ("stacked" if stack else "alone")
    uri = f"sqlite:///{mode / 'mlflow.db'}"
    env = {
        **os.environ,
        "TLBENCH_FEATURE_STORE": str(mode / "features"),
        "TLBENCH_CHECKPOINTS": str(mode / "checkpoints"),
    }
    cmd = [sys.executable, "-m", "tlbench.cli", "run", "--grid", str(grid), "--tracking-uri", uri]
    cmd += ["--workers", str(workers), "--stack" if stack else "--no-stack"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return uri, time.perf_counter() - t0


def cell_runs(uri: str) -> tuple[object, dict[str, object]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("stacked_probes")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return client, {r.data.tags["tlbench.cell"]: r for r in runs if r.data.tags.get("tlbench.cell_id")}


def logged(client: object, run: object) -> dict[str, list[tuple[int, float]]]:
    keys = [k for k in run.data.metrics if k not in TIMED and not k.startswith(("time.", "system/"))]
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)) for k in keys}


def compare(uri_a: str, uri_b: str) -> dict[str, object]:
    """Per run: the largest |difference| of any logged metric at any step; accuracies identical?"""
    (ca, a), (cb, b) = cell_runs(uri_a), cell_runs(uri_b)
    assert a.keys() == b.keys(), "the stores hold different cells"
    per_run, same_acc = {}, True
    for name in sorted(a):
        la, lb = logged(ca, a[name]), logged(cb, b[name])
        assert la.keys() == lb.keys(), f"{name}: different metrics logged"
        worst = 0.0
        for k, points in la.items():
            assert [s for s, _ in points] == [s for s, _ in lb[k]], f"{name}/{k}: different steps"
            for (_, va), (_, vb) in zip(points, lb[k], strict=True):
                worst = max(worst, abs(va - vb))
                same_acc &= "acc" not in k or va == vb
        per_run[name] = worst
    return {
        "runs": len(per_run),
        "finished": sum(r.info.status == "FINISHED" for r in a.values()),
        "max_abs_diff": max(per_run.values()),
        "max_abs_diff_per_run": per_run,
        "accuracies_identical": same_acc,
    }


def phases(uri: str) -> dict[str, float]:
    """``time.<phase>_s`` summed over the runs (each run's latest attempt)."""
    _, runs = cell_runs(uri)
    out: dict[str, float] = {}
    for r in runs.values():
        for k, v in r.data.metrics.items():
            if k.startswith("time.") and k.endswith("_s"):
                out[k[5:-2]] = out.get(k[5:-2], 0.0) + v
    return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--keep", default=None, help="work folder to keep (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="tlbench-stack-"))
    weights = work / "source.safetensors"
    source_acc = pretrain(weights) if not weights.exists() else None
    grid = work / "stacked_probes.yaml"
    grid.write_text(grid_text(weights, args.epochs))
    load = os.getloadavg()
    alone, t_alone = run(grid, work, stack=False, workers=args.workers)
    stacked, t_stacked = run(grid, work, stack=True, workers=args.workers)
    cells = {k: phases(u) for k, u in (("alone", alone), ("stacked", stacked))}
    report = {
        "workload": f"test_resnet (fractals) -> digits @32, linear_probe none, {args.epochs} epochs, "
        f"24 cells (3 lr x 2 wd x 2 optimizers x 2 seeds), {args.workers} worker(s)",
        "source_test_acc": source_acc,
        "load_before": [round(x, 2) for x in load],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "wall_alone_s": round(t_alone, 1),
        "wall_stacked_s": round(t_stacked, 1),
        "wall_ratio": round(t_alone / t_stacked, 2),
        "cells_alone_s": cells["alone"].get("wall"),
        "cells_stacked_s": cells["stacked"].get("wall"),
        "cells_ratio": round(cells["alone"]["wall"] / cells["stacked"]["wall"], 2),
        "phases_alone_s": cells["alone"],
        "phases_stacked_s": cells["stacked"],
        **compare(stacked, alone),
        "work": str(work),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
