"""Fill an MLflow store through ``MlflowClient`` with plausible results, one run per cell: no training.

The report tests build their session stores with it, and run as a script it builds a full-scale
store (every cell of ``benchmarks/grids/full.yaml``) to time ``tlbench report`` on and to look at
its plots::

    python tests/report/synthetic_store.py full /tmp/full/mlflow.db

Numbers are deterministic: a configuration's effect comes from its axes (plus a small offset
hashed from its name), a replicate's noise from its seed, so the same cells give the same store.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from tlbench.tracking import Tracker, tags

BASE = {"cifar10": 0.93, "cifar100": 0.77, "cifar100_coarse": 0.85, "hymenoptera": 0.93, "digits": 0.95}
EFFECT = {
    "resnet18": -0.03,
    "resnet50": 0.0,
    "densenet169": -0.006,
    "mobilenetv3_large_100": -0.02,
    "efficientnet_b0": 0.004,
    "vit_small_patch16_224": 0.015,
    "linear_probe": -0.08,
    "partial": -0.01,
    "finetune": 0.0,
    "lp_ft": 0.004,
    "scratch": -0.33,
    "adamw": 0.004,
    "none": -0.012,
    "strong": 0.003,
}
COST = {"resnet50": 2.5, "densenet169": 3.0, "vit_small_patch16_224": 2.2, "mobilenetv3_large_100": 0.7}
SIZE = {"hymenoptera": 244, "digits": 1400}
ENV = {"env.torch": "2.4.1", "env.timm": "1.0.9", "env.tlbench": "0.6.0", "env.threads": "16"}


@dataclass
class Spec:
    """One run to write: its state, final metrics, per-epoch val accuracy, extra tags and params."""

    status: str = "FINISHED"
    metrics: dict[str, float] = field(default_factory=dict)
    curve: list[float] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


def _noise(key: str, scale: float) -> float:
    """A deterministic normal draw for ``key``."""
    seed = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)
    return float(np.random.default_rng(seed).normal(0, scale))


def plausible(cell: Any) -> Spec:
    """A finished run with numbers a real grid could have left: effects by axis, noise by seed."""
    names = [cell.dataset.name, cell.backbone.name, cell.strategy.name, cell.optimizer.name]
    effect = sum(EFFECT.get(n, 0.0) for n in [*names, cell.augmentation.name])
    config = cell.config_name or cell.name
    test = BASE.get(cell.dataset.name, 0.8) + effect + _noise(config, 0.006) + _noise(cell.name, 0.004)
    test = min(max(test, 0.05), 0.995)
    epochs = cell.train.epochs
    tau = 3.0 if cell.strategy.name == "scratch" else 1.2
    final_val = min(test + _noise(cell.name + "/val", 0.006), 0.999)
    curve = [
        final_val * (1 - 0.6 * math.exp(-(e + 1) / tau)) + _noise(f"{cell.name}/{e}", 0.004)
        for e in range(epochs)
    ]
    factor = {"linear_probe": 0.35, "partial": 0.7}.get(cell.strategy.name, 1.0)
    images = SIZE.get(cell.dataset.name, 45_000)
    time_s = epochs * images * 4e-4 * COST.get(cell.backbone.name, 1.0) * factor
    metrics = {
        "test_acc": test,
        "best_val_acc": max(curve),
        "best_epoch": float(int(np.argmax(curve))),
        "train_time_s": time_s * (1 + _noise(cell.name + "/t", 0.03)),
        "params_total": 11.7e6,
        "params_trainable": 5130.0 if cell.strategy.name == "linear_probe" else 11.7e6,
    }
    return Spec(metrics=metrics, curve=curve, params=dict(ENV), tags={tags.DEVICE: "cuda"})


def fill_store(store: str, experiment: str, runs: Iterable[tuple[Any, Spec]]) -> dict[str, str]:
    """Write one run per (cell, spec), newest last; returns cell name -> run id."""
    client = MlflowClient(store)
    exp = Tracker(store).experiment_id(experiment)
    out: dict[str, str] = {}
    for i, (cell, spec) in enumerate(runs):
        run_tags = {
            tags.CELL_ID: cell.id,
            tags.CELL: cell.name,
            tags.CONFIG_ID: cell.config_id or cell.id,
            tags.GRID: cell.grid,
            **spec.tags,
        }
        run = client.create_run(exp, start_time=1_700_000_000_000 + 1000 * i, tags=run_tags)
        params = [Param(k, v) for k, v in {**cell.flat_params(), **spec.params}.items()]
        metrics = [Metric(k, v, 0, 0) for k, v in spec.metrics.items()]
        metrics += [Metric("val_acc", v, 0, e) for e, v in enumerate(spec.curve)]
        metrics += [Metric("train_loss", 1.5 * (1 - v), 0, e) for e, v in enumerate(spec.curve)]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id, spec.status)
        out[cell.name] = run.info.run_id
    return out


def add_summary_runs(store: str, experiment: str, cells: list[Any]) -> int:
    """A summary run per replicated configuration, as ``tracking.summaries`` writes: the report
    must leave them out (no cell id)."""
    client = MlflowClient(store)
    exp = Tracker(store).experiment_id(experiment)
    configs = {c.config_id: c for c in cells if c.replicate is not None}
    for c in configs.values():
        run_tags = {
            tags.SUMMARY: c.config_id,
            tags.CONFIG_ID: c.config_id,
            tags.VARIANT: "summary",
            tags.CELL: c.config_name,
        }
        run = client.create_run(exp, tags=run_tags)
        client.log_batch(run.info.run_id, metrics=[Metric("test_acc_mean", 0.01, 0, 0)])
        client.set_terminated(run.info.run_id, "FINISHED")
    return len(configs)


def by_config(values: dict[str, Any]) -> dict[str, list[Any]]:
    """{cell name@sN: v} -> {configuration name: [v, ...]} (in seed order)."""
    out: dict[str, list[Any]] = {}
    for name, v in sorted(values.items(), key=lambda kv: int(kv[0].rsplit("@s", 1)[1])):
        out.setdefault(name.rsplit("@s", 1)[0], []).append(v)
    return out


@lru_cache(maxsize=16)
def build_report(grid: Path, store: str, **options: Any) -> Any:
    """``report.build`` of a grid file from a store, as ``tlbench report`` calls it (no plots),
    cached: the tests read one store in several ways."""
    from tlbench import report as rp
    from tlbench.cells import expand
    from tlbench.spec import load_grid

    spec = load_grid(grid)
    tracker = Tracker(store)
    exp = tracker.experiment_id(spec.name)
    rows, cols = options.pop("rows", ("dataset", "backbone")), options.pop("cols", ("strategy",))
    return rp.build(
        expand(spec), tracker, exp, grid=spec.name, rows=list(rows), cols=list(cols), plots=False, **options
    )


def full_scale(grid: str, db: Path) -> None:
    """Every cell of a shipped grid, with a few failures, gaps and mixed environments."""
    from tlbench.cells import expand
    from tlbench.spec import load_grid

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "grids" / f"{grid}.yaml"
    spec = load_grid(path)
    cells = expand(spec)
    db.parent.mkdir(parents=True, exist_ok=True)
    runs = []
    for i, cell in enumerate(cells):
        if i % 211 == 5:
            continue  # never ran
        s = plausible(cell)
        if i % 97 == 3:
            s = Spec(status="FAILED", tags={tags.REASON: "CUDA out of memory"})
        elif i % 89 == 7:
            s.params["env.torch"] = "2.5.0"  # a replicate that ran after an upgrade
        runs.append((cell, s))
    fill_store(f"sqlite:///{db}", spec.name, runs)
    add_summary_runs(f"sqlite:///{db}", spec.name, cells[:40])
    print(f"{len(runs)} runs of {len(cells)} cells in sqlite:///{db}")


if __name__ == "__main__":
    full_scale(sys.argv[1], Path(sys.argv[2]))
