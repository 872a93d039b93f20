"""The feature store (issue #17): store cold vs store off (today's per-run cache), side by side.

Workload (named, so the ratios can be checked): a frozen randomly initialised ``efficientnet_b0``
at 64 px, ``synthetic`` 10 classes × (200 train, 40 val, 40 test) = 2,000 / 400 / 400 images,
``linear_probe`` with ``none`` augmentation, 5 epochs. Two measures, each as the user runs it
(a fresh ``tlbench`` process, its own MLflow store and Optuna journal, a fresh store folder):

1. a 20-trial ``tlbench tune`` study on the probe cell (sampler seed 0): wall time, best value;
2. a 6-cell ``tlbench run`` grid on that backbone (sgd and adamw × 3 lr): wall time, test
   accuracy cell for cell.

Then the store's disk use, its entries and how many extractions the runs' params report.

    python benchmarks/perf/feature_store.py [--trials 20] [--backbone efficientnet_b0 --size 64]
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

GRID = """
name: {name}
train: {{epochs: {epochs}, batch_size: 64, image_size: {size}, lr: 0.01, seed: 0}}
datasets:
  - {{name: synthetic, params: {{classes: 10, train_per_class: {per_class}, val_per_class: {small},
      test_per_class: {small}, image_size: {size}}}}}
backbones: [{{name: {backbone}, weights: none}}]
strategies: [linear_probe]
optimizers: {optimizers}
augmentations: [none]
"""
SIX = (
    "[{name: sgd, label: sgd-a, train: {lr: 0.3}}, {name: sgd, label: sgd-b, train: {lr: 0.1}},"
    " {name: sgd, label: sgd-c, train: {lr: 0.03}}, {name: adamw, label: adamw-a, train: {lr: 0.01}},"
    " {name: adamw, label: adamw-b, train: {lr: 0.003}}, {name: adamw, label: adamw-c, train: {lr: 0.001}}]"
)


def _tlbench(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tlbench.cli", *args], env=env, check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - t0


def _runs(uri: str, grid: str) -> list:
    """The grid's cell or trial runs (not a study's parent run)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments() if e.name == grid]
    runs = client.search_runs(exps, max_results=1000) if exps else []
    return [
        r for r in runs if "tlbench.cell" in r.data.tags and r.data.tags.get("tlbench.variant") != "study"
    ]


def _extractions(runs: list) -> int:
    return sum(r.data.params.get("feature_store.splits", "").count("extracted") for r in runs)


def _mode(mode: str, work: Path, grid: Path, tune: Path, trials: int) -> dict:
    import optuna

    base = work / mode
    stores = {k: base / f"features-{k}" for k in ("tune", "grid")}  # each measure starts cold
    uri = f"sqlite:///{base / 'mlflow.db'}"
    journal = base / "optuna.journal"
    base.mkdir(parents=True)

    def env(k: str) -> dict[str, str]:
        return {**os.environ, "TLBENCH_FEATURE_STORE": "off" if mode == "off" else str(stores[k])}

    tune_args = ["--trials", str(trials), "--seed", "0", "--device", "cpu", "--storage", str(journal)]
    t_tune = _tlbench(["tune", "--grid", str(tune), "--tracking-uri", uri, *tune_args], env("tune"))
    summaries = optuna.get_all_study_summaries(
        optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    )
    best = summaries[0].best_trial.value if summaries and summaries[0].best_trial else None
    t_grid = _tlbench(["run", "--grid", str(grid), "--device", "cpu", "--tracking-uri", uri], env("grid"))
    cells = {r.data.tags["tlbench.cell"]: r.data.metrics.get("test_acc") for r in _runs(uri, "fsgrid")}
    files = [f for d in stores.values() if d.exists() for f in d.glob("*.safetensors")]
    return {
        "tune_s": round(t_tune, 1),
        "tune_best": best,
        "tune_extractions": _extractions(_runs(uri, "fstune")),
        "grid_s": round(t_grid, 1),
        "grid_test_acc": dict(sorted(cells.items())),
        "grid_extractions": _extractions(_runs(uri, "fsgrid")),
        "store_entries": len(files),
        "store_mb": round(sum(f.stat().st_size for f in files) / 1e6, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="efficientnet_b0")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    import torch

    from tlbench.data import load_dataset

    kw = dict(
        backbone=args.backbone,
        size=args.size,
        per_class=args.per_class,
        small=args.per_class // 5,
        epochs=args.epochs,
    )
    params = dict(
        classes=10,
        train_per_class=args.per_class,
        val_per_class=args.per_class // 5,
        test_per_class=args.per_class // 5,
        image_size=args.size,
    )
    data = load_dataset("synthetic", params=params)  # generated once into the tensor cache, untimed
    print(f"# cpu: {os.cpu_count()} cores, {torch.get_num_threads()} threads; images {data.sizes()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        grid, tune = work / "fsgrid.yaml", work / "fstune.yaml"
        grid.write_text(GRID.format(name="fsgrid", optimizers=SIX, **kw))
        tune.write_text(GRID.format(name="fstune", optimizers="[sgd]", **kw) + "tune: {lr: [0.001, 1.0]}\n")
        off = _mode("off", work, grid, tune, args.trials)
        cold = _mode("cold", work, grid, tune, args.trials)
    same = off["grid_test_acc"] == cold["grid_test_acc"]
    print(
        json.dumps(
            {"workload": {**kw, "images": data.sizes(), "trials": args.trials}, "off": off, "cold": cold},
            indent=1,
        )
    )
    print(
        f"tune  {args.trials} trials: off {off['tune_s']} s, store cold {cold['tune_s']} s -> "
        f"{off['tune_s'] / cold['tune_s']:.2f}x; best value off {off['tune_best']} vs store {cold['tune_best']}"
    )
    print(
        f"grid  6 cells: off {off['grid_s']} s, store cold {cold['grid_s']} s -> "
        f"{off['grid_s'] / cold['grid_s']:.2f}x; test accuracies identical cell for cell: {same}"
    )
    print(
        f"store {cold['store_entries']} entries, {cold['store_mb']} MB; extractions: tune "
        f"{cold['tune_extractions']}, grid {cold['grid_extractions']} (off: every run extracts)"
    )


if __name__ == "__main__":
    main()
