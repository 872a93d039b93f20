"""A replicated configuration's summary run: statistics over its seeds, one per configuration even
when processes race, never fewer seeds than it already showed, never a cell's FINISHED run."""

from __future__ import annotations

import threading

import pytest
from helpers import make_cell, make_result
from scipy import stats

from tlbench.cells import expand
from tlbench.spec import parse_grid
from tlbench.tracking import Tracker, tags
from tlbench.tracking.summaries import update_summaries

RAW = {
    "name": "sum",
    "train": {"epochs": 2, "image_size": 16},
    "seeds": 3,
    "datasets": ["digits"],
    "backbones": [{"name": "test_resnet", "weights": "none"}],
    "strategies": ["scratch"],
    "optimizers": ["sgd"],
    "augmentations": ["none"],
}
ACCS = {0: 0.90, 1: 0.93, 2: 0.94}


def _finish(tracker, exp, cell, status="FINISHED"):
    run = tracker.start_cell(exp, cell)
    if status == "FINISHED":
        result = make_result(cell, val_acc=ACCS[cell.replicate] - 0.01, test_acc=ACCS[cell.replicate])
        for h in result.history:  # the per-epoch metrics a real run logs as it trains
            run.on_epoch(int(h["epoch"]), {k: v for k, v in h.items() if k != "epoch"})
        run.finish(result)
    else:
        run.fail(status, "boom")
    return run.run_id


def _summaries(tracker, exp):
    return tracker.client.search_runs([exp], filter_string=f"tags.`{tags.SUMMARY}` != ''")


@pytest.fixture
def grid(store):
    cells = expand(parse_grid(RAW))
    tracker = Tracker(store)
    return cells, tracker, tracker.experiment_id("sum")


def test_the_summary_holds_mean_std_and_t_interval_and_nests_its_replicates(grid):
    cells, tracker, exp = grid
    ids = [_finish(tracker, exp, c) for c in cells]
    (sid,) = update_summaries(tracker, exp, cells)
    run = tracker.client.get_run(sid)
    m, vals = run.data.metrics, list(ACCS.values())
    assert m["n_seeds"] == 3 and m["test_acc_mean"] == pytest.approx(sum(vals) / 3)
    low, high = stats.t.interval(0.95, 2, loc=sum(vals) / 3, scale=stats.sem(vals))
    assert (m["test_acc_ci95_low"], m["test_acc_ci95_high"]) == (pytest.approx(low), pytest.approx(high))
    assert m["test_acc_std"] == pytest.approx(stats.tstd(vals))
    assert run.data.params["strategy"] == "scratch" and "seed" not in run.data.params
    assert len(tracker.client.get_metric_history(sid, "val_acc_mean")) == 2  # the mean curve, per epoch
    assert all(tracker.client.get_run(i).data.tags[tags.PARENT_RUN_ID] == sid for i in ids)
    assert cells[0].id not in {r.data.tags.get(tags.CELL_ID) for r in _summaries(tracker, exp)}
    assert set(tracker.finished_runs(exp)) == {c.id for c in cells}  # the summary is no cell's run


def test_a_failed_replicate_leaves_n_two_and_a_later_finish_updates_it(grid):
    cells, tracker, exp = grid
    _finish(tracker, exp, cells[0])
    _finish(tracker, exp, cells[1])
    _finish(tracker, exp, cells[2], status="FAILED")
    (sid,) = update_summaries(tracker, exp, cells)
    assert tracker.client.get_run(sid).data.metrics["n_seeds"] == 2
    _finish(tracker, exp, cells[2])  # retried later
    assert update_summaries(tracker, exp, cells) == [sid]
    assert tracker.client.get_run(sid).data.metrics["n_seeds"] == 3
    update_summaries(tracker, exp, cells[:2])  # a stale view over fewer seeds changes nothing
    assert tracker.client.get_run(sid).data.metrics["n_seeds"] == 3


def test_racing_processes_leave_one_summary(grid):
    cells, tracker, exp = grid
    for c in cells:
        _finish(tracker, exp, c)
    barrier = threading.Barrier(3)

    def update():
        barrier.wait()
        update_summaries(Tracker(tracker.uri), exp, cells)

    threads = [threading.Thread(target=update) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    update_summaries(tracker, exp, cells)  # whoever looks next sees (and keeps) one
    assert len(_summaries(tracker, exp)) == 1


def test_seedless_cells_get_no_summary(store):
    tracker = Tracker(store)
    exp = tracker.experiment_id("t")
    cell = make_cell()
    tracker.start_cell(exp, cell).finish(make_result(cell))
    assert update_summaries(tracker, exp, [cell]) == []
