"""``time.<phase>_s``: disjoint phases that add up to the cell's wall time, recorded on its run."""

from __future__ import annotations

import time

import pytest
from mlflow.tracking import MlflowClient

from tlbench.cells import expand
from tlbench.executor import RunOptions, run_cell
from tlbench.spec import parse_grid
from tlbench.tracking import Tracker
from tlbench.train.timings import CellTimes, timed, timing


def test_nested_phases_are_disjoint_and_add_up_to_the_wall():
    times = CellTimes()
    with timing(times):
        with timed("train"):
            time.sleep(0.05)
            with timed("eval"):  # counted as eval only
                time.sleep(0.05)
            time.sleep(0.02)
        time.sleep(0.03)  # in no phase: other
    m = times.metrics()
    assert m["time.train_s"] == pytest.approx(0.07, abs=0.02)
    assert m["time.eval_s"] == pytest.approx(0.05, abs=0.02)
    assert m["time.other_s"] == pytest.approx(0.03, abs=0.02)
    assert m["time.train_s"] + m["time.eval_s"] + m["time.other_s"] == pytest.approx(m["time.wall_s"])


def test_timed_without_a_clock_costs_nothing_and_records_nothing():
    with timed("train"):
        pass
    outer = CellTimes()
    with timing(outer):
        pass
    with timed("eval"):  # the clock is no longer current
        pass
    assert "time.eval_s" not in outer.metrics()


GRID = {
    "name": "timings",
    "train": {"epochs": 3, "batch_size": 32, "image_size": 16, "lr": 0.05, "seed": 0},
    "datasets": [
        {
            "name": "synthetic",
            "params": {
                "classes": 3,
                "train_per_class": 20,
                "val_per_class": 6,
                "test_per_class": 6,
                "image_size": 16,
            },
        }
    ],
    "backbones": [{"name": "test_resnet", "weights": "none"}],
    "strategies": ["scratch", "linear_probe"],
    "optimizers": ["sgd"],
    "augmentations": ["none"],
}


@pytest.mark.parametrize("strategy", ["scratch", "linear_probe"])
def test_a_cells_run_records_where_its_time_went_and_it_adds_up(store, tmp_path, monkeypatch, strategy):
    monkeypatch.setenv("TLBENCH_FEATURE_STORE", str(tmp_path / "features"))
    cell = next(c for c in expand(parse_grid(GRID)) if c.strategy.name == strategy)
    tracker = Tracker(store)
    exp = tracker.experiment_id("timings")
    t0 = time.time()
    outcome = run_cell(
        cell, tracker, RunOptions(store, exp, device="cpu", checkpoint_dir=str(tmp_path / "ck"))
    )
    wall = time.time() - t0
    assert outcome.status == "FINISHED"
    m = MlflowClient(store).get_run(outcome.run_id).data.metrics
    phases = {k: v for k, v in m.items() if k.startswith("time.") and k != "time.wall_s"}
    expected = {"claim", "open", "data", "weights", "build", "train", "eval", "checkpoint", "track", "finish"}
    assert expected <= {k[len("time.") : -len("_s")] for k in phases}
    assert all(v >= 0 for v in phases.values())
    assert sum(phases.values()) == pytest.approx(m["time.wall_s"], rel=1e-6)
    # the clock covers the cell: within 10 % of its wall time seen from outside
    assert m["time.wall_s"] == pytest.approx(wall, rel=0.10)
    assert m["time.other_s"] < 0.10 * m["time.wall_s"]  # the phases name where the time went
    # the training phase holds the epochs' steps (train_time_s), not more than a little besides
    assert m["time.train_s"] >= m["train_time_s"] * 0.9 - (m.get("time.features_s") or 0)
