"""Stores for the report tests, each built once per session: one filled by a real tiny grid run
(numbers as training leaves them), one filled directly through MLflow's client (run states and
tags that a healthy run never leaves)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from tlbench import report as rp
from tlbench.cells import expand
from tlbench.cli import main
from tlbench.spec import load_grid
from tlbench.tracking import Tracker, tags

GRID = """
name: rep
train: {epochs: 2, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
datasets:
  - {name: synthetic, params: {classes: 3, train_per_class: 20, val_per_class: 6, test_per_class: 6, image_size: 16}}
  - {name: digits, train: {subset: 0.1}}
backbones: [{name: test_resnet, weights: none}]
strategies: [linear_probe, scratch]
optimizers: [sgd]
augmentations: [none]
reported:
  "synthetic/*/scratch/*": {test_acc: 0.5, source: "a published table"}
"""


@pytest.fixture(scope="session")
def filled(tmp_path_factory):
    """A store where 3 of the 4 cells ran (the digits linear probe was never run)."""
    tmp = tmp_path_factory.mktemp("report")
    grid = tmp / "rep.yaml"
    grid.write_text(GRID)
    store = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--grid",
            str(grid),
            "--tracking-uri",
            store,
            "--select",
            "synthetic/*",
            "--select",
            "*/scratch/*",
        ],
    )
    assert result.exit_code == 0, result.output
    return grid, store, tmp


@pytest.fixture(scope="session")
def make_report() -> Callable[..., tuple[rp.Report, Tracker]]:
    """Build the report of a grid file from a store, the way ``tlbench report`` does."""

    def _report(
        grid: Path, store: str, out: Path, rows: Any = ("dataset", "backbone"), cols: Any = ("strategy",)
    ) -> tuple[rp.Report, Tracker]:
        spec = load_grid(grid)
        cells = expand(spec)
        tracker = Tracker(store)
        exp = tracker.experiment_id(spec.name)
        rep = rp.build(cells, tracker, exp, grid=spec.name, rows=list(rows), cols=list(cols), out=out)
        return rep, tracker

    return _report


@pytest.fixture(scope="session")
def client_filled(tmp_path_factory):
    """A store written through MlflowClient alone, for the grid ``GRID``'s four cells:

    - synthetic linear probe: an older FINISHED run and a newer FAILED one (the FINISHED one counts)
    - synthetic scratch: KILLED, with a two-line reason
    - digits scratch: FINISHED, plus a newer FINISHED ``tuned`` variant that must stay out
    - digits linear probe: never run
    """
    tmp = tmp_path_factory.mktemp("report-client")
    grid = tmp / "rep.yaml"
    grid.write_text(GRID)
    store = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    cells = {c.name: c for c in expand(load_grid(grid))}
    tracker = Tracker(store)
    exp = tracker.experiment_id("rep")
    client = MlflowClient(store)
    runs: dict[str, str] = {}

    def add(key: str, cell: str, status: str, metrics: dict[str, float], extra: dict[str, str]) -> None:
        start = 1_700_000_000_000 + 1000 * len(runs)  # distinct: "newest first" is by start time
        run = client.create_run(
            exp, start_time=start, tags={tags.CELL_ID: cells[cell].id, tags.CELL: cell, **extra}
        )
        for name, value in metrics.items():
            client.log_metric(run.info.run_id, name, value, step=0)
        client.set_terminated(run.info.run_id, status)
        runs[key] = run.info.run_id

    probe, scratch = "synthetic/test_resnet/linear_probe/sgd/none", "synthetic/test_resnet/scratch/sgd/none"
    digits = "digits-10pct/test_resnet/scratch/sgd/none"
    add("probe_ok", probe, "FINISHED", {"test_acc": 0.6, "val_acc": 0.55}, {})
    add("probe_failed", probe, "FAILED", {}, {tags.REASON: "CUDA out of memory"})
    add("scratch_killed", scratch, "KILLED", {}, {tags.REASON: "interrupted\ntraceback follows"})
    add("digits_ok", digits, "FINISHED", {"test_acc": 0.7, "val_acc": 0.65}, {})
    add("digits_tuned", digits, "FINISHED", {"test_acc": 0.9}, {tags.VARIANT: "tuned"})
    return grid, store, runs


REPLICATED = """
name: reps
train: {epochs: 3, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
seeds: 5
datasets:
  - {name: synthetic, params: {classes: 3, train_per_class: 20, val_per_class: 6, test_per_class: 6, image_size: 16}}
  - {name: hymenoptera}
  - {name: digits}
backbones: [{name: test_resnet, weights: none}]
strategies: [linear_probe, finetune, scratch]
optimizers: [sgd, adamw]
augmentations: [none]
"""

# per (dataset, strategy, optimizer): the mean test accuracy the replicates are drawn around, and
# the validation offset (finetune/adamw: best on test, worse on validation than finetune/sgd)
MEANS = {"linear_probe": 0.899, "finetune": 0.900, "scratch": 0.60}
OPT_TEST = {"sgd": -0.002, "adamw": 0.002}
SEED_NOISE = [0.004, -0.006, 0.001, 0.007, -0.003]  # shared by a dataset's configurations: pairing helps
DRIFT = "synthetic/test_resnet/scratch/sgd/none"  # one of its replicates ran with another torch


def replicate_value(cell: Any) -> tuple[float, float]:
    """(test accuracy, best validation accuracy) of one replicate, deterministic."""
    seed = cell.train.seed
    base = (
        MEANS[cell.strategy.name] - {"synthetic": 0.0, "hymenoptera": 0.1, "digits": 0.05}[cell.dataset.name]
    )
    own = 0.0015 * ((seed * 7 + len(cell.strategy.name) + len(cell.optimizer.name)) % 5 - 2)
    test = base + OPT_TEST[cell.optimizer.name] + SEED_NOISE[seed] + own
    val = test + (0.01 if cell.optimizer.name == "sgd" else -0.01)
    return test, val


@pytest.fixture(scope="session")
def replicated(tmp_path_factory):
    """A grid with ``seeds: 5`` and its store filled through MlflowClient: 3 datasets (hymenoptera's
    test split is its val split) × 3 strategies × 2 optimizers × 5 seeds, per-epoch val curves, a
    summary run per configuration (to be left out), one FAILED replicate (hymenoptera linear probe
    adamw, seed 4) and one replicate of ``DRIFT`` with another torch.

    Returns (grid path, store URI, {cell name: (test, val, curve)} of the FINISHED runs)."""
    from synthetic_store import ENV, Spec, add_summary_runs, fill_store

    tmp = tmp_path_factory.mktemp("replicated")
    grid = tmp / "reps.yaml"
    grid.write_text(REPLICATED)
    store = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    cells = expand(load_grid(grid))
    runs, values = [], {}
    for cell in cells:
        test, val = replicate_value(cell)
        curve = [val - 0.2, val - 0.05, val]
        spec = Spec(
            metrics={"test_acc": test, "best_val_acc": val, "train_time_s": 10.0},
            curve=curve,
            params=dict(ENV),
            tags={tags.DEVICE: "cpu"},
        )
        if cell.config_name == "hymenoptera/test_resnet/linear_probe/adamw/none" and cell.train.seed == 4:
            spec = Spec(status="FAILED", tags={tags.REASON: "CUDA out of memory"})
        else:
            values[cell.name] = (test, val, curve)
        if cell.config_name == DRIFT and cell.train.seed == 2:
            spec.params["env.torch"] = "2.5.0"
        runs.append((cell, spec))
    fill_store(store, "reps", runs)
    add_summary_runs(store, "reps", cells)
    return grid, store, values


SEEDED = """
name: seeded
train: {epochs: 1, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
seeds: 3
datasets:
  - {name: synthetic, params: {classes: 3, train_per_class: 12, val_per_class: 6, test_per_class: 6, image_size: 16}}
backbones: [{name: test_resnet, weights: none}]
strategies: [linear_probe, scratch]
optimizers: [sgd]
augmentations: [none]
"""


@pytest.fixture(scope="session")
def trained_seeds(tmp_path_factory):
    """A real tiny grid with 3 seeds, trained by ``tlbench run``: 2 configurations × 3 seeds."""
    tmp = tmp_path_factory.mktemp("seeded")
    grid = tmp / "seeded.yaml"
    grid.write_text(SEEDED)
    store = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    result = CliRunner().invoke(main, ["run", "--grid", str(grid), "--tracking-uri", store])
    assert result.exit_code == 0, result.output
    return grid, store, result.output


BY_METRIC = """
name: bymetric
train: {epochs: 1, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
seeds: 3
datasets:
  - {name: synthetic, params: {classes: 3, train_per_class: 12, val_per_class: 6, test_per_class: 6, image_size: 16}}
  - {name: digits, metric: mean_per_class_acc}
backbones: [{name: test_resnet, weights: none}]
strategies: [linear_probe, scratch]
optimizers: [sgd]
augmentations: [none]
reported:
  "digits/*/scratch/*": {mean_per_class_acc: 0.75, source: "a paper", protocol: "other weights"}
  "digits/*/linear_probe/*": {mean_per_class_acc: 0.40, source: "a paper"}
"""
# (test acc, test mean per-class acc): on digits the probe is better by accuracy and worse by
# the mean per-class accuracy, which that dataset ranks by
BY_METRIC_VALUES = {
    ("synthetic", "linear_probe"): (0.90, 0.70),
    ("synthetic", "scratch"): (0.80, 0.85),
    ("digits", "linear_probe"): (0.90, 0.60),
    ("digits", "scratch"): (0.80, 0.75),
}


@pytest.fixture(scope="session")
def by_metric(tmp_path_factory):
    """A replicated grid whose digits cells rank by mean per-class accuracy, filled through the client."""
    from synthetic_store import Spec, fill_store

    tmp = tmp_path_factory.mktemp("by-metric")
    grid = tmp / "bymetric.yaml"
    grid.write_text(BY_METRIC)
    store = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    runs = []
    for cell in expand(load_grid(grid)):
        acc, per_class = BY_METRIC_VALUES[(cell.dataset.name, cell.strategy.name)]
        noise = 0.01 * (cell.train.seed - 1)
        metrics = {
            "test_acc": acc + noise,
            "test_mean_per_class_acc": per_class + noise,
            "best_val_acc": acc + noise,
            "best_val_mean_per_class_acc": per_class + noise,
        }
        runs.append((cell, Spec(metrics=metrics, curve=[acc])))
    fill_store(store, "bymetric", runs)
    return grid, store
