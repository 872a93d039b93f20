"""CellRun's end of run: artifacts, FINISHED, and what must happen before anyone sees it done."""

from __future__ import annotations

import threading
import time

from mlflow.tracking import MlflowClient

from tlbench.data import load_dataset
from tlbench.grid import expand
from tlbench.spec import parse_grid
from tlbench.tracking import Tracker
from tlbench.train import fit

RAW = {
    "name": "trk",
    "train": {"epochs": 1, "batch_size": 64, "image_size": 8, "lr": 0.05, "seed": 0},
    "datasets": ["digits"],
    "backbones": [{"name": "test_resnet", "weights": "none"}],
    "strategies": ["scratch"],
    "optimizers": ["sgd"],
    "augmentations": ["none"],
}


def test_background_finish_completes_only_after_then_has_run(store):
    cell = expand(parse_grid(RAW))[0]
    tracker = Tracker(store)
    exp = tracker.experiment_id("trk")
    run = tracker.start_cell(exp, cell)
    result = fit(cell, load_dataset("digits"), device="cpu", reporter=run)
    done = threading.Event()

    def then() -> None:  # e.g. releasing the cell's claim: slow on a remote server
        time.sleep(0.3)
        done.set()

    future = run.finish(result, background=True, then=then)
    assert future is not None
    future.result(timeout=60)
    assert done.is_set()  # a caller that waited on the future never races the claim release
    assert MlflowClient(store).get_run(run.run_id).info.status == "FINISHED"


def test_then_runs_even_when_writing_artifacts_fails(store):
    cell = expand(parse_grid(RAW))[0]
    tracker = Tracker(store)
    run = tracker.start_cell(tracker.experiment_id("trk"), cell)
    result = fit(cell, load_dataset("digits"), device="cpu", reporter=run)
    result.history = []  # history.csv cannot be written without a header row
    ran = []
    future = run.finish(result, background=True, then=lambda: ran.append(True))
    assert future is not None and future.exception(timeout=60) is not None
    assert ran == [True]  # the claim is released all the same
    status = MlflowClient(store).get_run(run.run_id)
    assert (
        status.info.status == "FAILED"
        and "writing artifacts failed" in status.data.tags["tlbench.failure_reason"]
    )
