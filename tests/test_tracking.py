"""CellRun's end of run: artifacts, FINISHED, and what must happen before anyone sees it done."""

from __future__ import annotations

import threading
import time

from helpers import make_cell, make_result
from mlflow.tracking import MlflowClient

from tlbench.tracking import Tracker


def test_background_finish_completes_only_after_then_has_run(store):
    cell = make_cell(grid="trk")
    tracker = Tracker(store)
    exp = tracker.experiment_id("trk")
    run = tracker.start_cell(exp, cell)
    result = make_result(cell)
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
    cell = make_cell(grid="trk")
    tracker = Tracker(store)
    run = tracker.start_cell(tracker.experiment_id("trk"), cell)
    result = make_result(cell)
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
