"""MLflow -> frames: values match the runs, missing and failed cells show, variants stay apart,
and the written report lands on one parent run of the grid."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tlbench import report as rp
from tlbench.cells import expand
from tlbench.report import collect
from tlbench.spec import load_grid
from tlbench.tracking import Tracker, tags


def test_values_match_the_runs_and_missing_cells_show(filled, make_report, tmp_path):
    grid, store, _ = filled
    rep, tracker = make_report(grid, store, tmp_path)
    cells = rep.cells.set_index("cell")
    assert len(cells) == 4
    assert cells.loc["digits-10pct/test_resnet/linear_probe/sgd/none", "status"] == "MISSING"
    client = MlflowClient(store)
    for name in ("synthetic/test_resnet/scratch/sgd/none", "digits-10pct/test_resnet/scratch/sgd/none"):
        run = client.get_run(cells.loc[name, "run_id"])
        assert cells.loc[name, "test_acc"] == run.data.metrics["test_acc"]
        assert cells.loc[name, "best_val_acc"] == run.data.metrics["best_val_acc"]
    # the pivot carries the same numbers, and a missing cell is an empty slot, not a dropped row
    assert (
        rep.pivot.loc[("synthetic", "test_resnet"), "scratch"]
        == cells.loc["synthetic/test_resnet/scratch/sgd/none", "test_acc"]
    )
    assert pd.isna(rep.pivot.loc[("digits-10pct", "test_resnet"), "linear_probe"])
    # per-epoch table: one row per finished configuration (here: cell), epochs 0 and 1 across
    assert list(rep.epochs.columns) == [0, 1] and len(rep.epochs.index) == 3
    # axis effects: strategy has two values, each with its mean over datasets
    eff = rep.effects[rep.effects["axis"] == "strategy"].set_index("value")
    assert eff.loc["scratch", "count"] == 2
    assert eff.loc["scratch", "mean"] == pytest.approx(
        cells[cells["strategy"] == "scratch"]["test_acc"].mean()
    )


def test_reported_numbers_sit_beside_tlbench(filled, make_report, tmp_path):
    grid, store, _ = filled
    rep, _ = make_report(grid, store, tmp_path)
    (row,) = rep.reported.to_dict("records")
    assert row["configuration"] == "synthetic/test_resnet/scratch/sgd/none"
    assert row["source"] == "a published table" and row["check"] == "n/a (one seed)"
    got = rep.cells.set_index("cell").loc[row["configuration"], "test_acc"]
    assert row["reported"] == 0.5 and row["tlbench"] == got
    assert row["difference"] == pytest.approx(got - 0.5)
    assert "Reported elsewhere vs tlbench" in rp.to_markdown(rep)


def test_tuned_runs_sit_beside_untuned_and_stay_out_of_the_main_table(filled, make_report, tmp_path):
    """Adds a tuned run to the session's store: later tests see it, as a report would."""
    import dataclasses

    from tlbench.executor import RunOptions, run_cell

    grid, store, _ = filled
    spec = load_grid(grid)
    cell = next(c for c in expand(spec) if c.name == "synthetic/test_resnet/scratch/sgd/none")
    tracker = Tracker(store)
    exp = tracker.experiment_id(spec.name)
    tuned_cell = dataclasses.replace(cell, train=cell.train.model_copy(update={"lr": 0.2, "batch_size": 16}))
    outcome = run_cell(tuned_cell, tracker, RunOptions(tracker.uri, exp, variant="tuned"))
    assert outcome.status == "FINISHED"
    rep, _ = make_report(grid, store, tmp_path)
    (row,) = rep.tuned.to_dict("records")
    assert row["cell"] == cell.name and row["tuned_lr"] == "0.2" and row["untuned_lr"] == "0.05"
    assert row["tuned_batch"] == "16" and row["tuned_test_acc"] == outcome.metrics["test_acc"]
    # the plain cell's row still shows the untuned run; a tuned run never counts as "the" cell
    plain = rep.cells.set_index("cell").loc[cell.name]
    assert plain["run_id"] != outcome.run_id
    assert tracker.finished_runs(exp)[cell.id].info.run_id == plain["run_id"]
    assert "Tuned vs untuned" in rp.to_html(rep)


def _frames(client_filled):
    grid, store, runs = client_filled
    cells = expand(load_grid(grid))
    tracker = Tracker(store)
    exp = tracker.experiment_id("rep")
    df = collect.cells_frame(cells, tracker, exp)
    return cells, tracker, exp, df.set_index("cell"), runs


def test_each_cell_shows_its_state_and_a_finished_run_wins_over_a_newer_failure(client_filled):
    _, _, _, df, runs = _frames(client_filled)
    probe = df.loc["synthetic/test_resnet/linear_probe/sgd/none"]
    assert probe["status"] == "FINISHED" and probe["run_id"] == runs["probe_ok"]
    assert probe["test_acc"] == 0.6 and probe["reason"] == ""
    killed = df.loc["synthetic/test_resnet/scratch/sgd/none"]
    assert killed["status"] == "KILLED" and killed["reason"] == "interrupted"  # first line only
    assert killed["run_id"] == runs["scratch_killed"] and pd.isna(killed["test_acc"])
    assert df.loc["digits-10pct/test_resnet/linear_probe/sgd/none", "status"] == "MISSING"
    assert pd.isna(df.loc["digits-10pct/test_resnet/linear_probe/sgd/none", "run_id"])
    # the newer tuned run is a variant, never the cell's own result
    assert df.loc["digits-10pct/test_resnet/scratch/sgd/none", "run_id"] == runs["digits_ok"]
    assert df.loc["digits-10pct/test_resnet/scratch/sgd/none", "test_acc"] == 0.7
    # grid-side columns ride along: epochs and the published numbers
    assert set(df["epochs"]) == {2}
    assert df.loc["synthetic/test_resnet/scratch/sgd/none", "reported_test_acc"] == 0.5


def test_tuned_runs_and_epoch_history_come_from_the_store(client_filled):
    cells, tracker, exp, df, runs = _frames(client_filled)
    tuned = collect.tuned_runs(cells, tracker, exp, df.reset_index())
    (row,) = tuned.to_dict("records")
    assert row["cell"] == "digits-10pct/test_resnet/scratch/sgd/none" and row["tuned_test_acc"] == 0.9
    assert row["hp_source"] == "tuned"  # no hp_source param: the variant tag says where it came from
    assert row["tuned_lr"] is None and row["untuned_lr"] is None  # no params were logged
    history = collect.epoch_history(tracker, df.reset_index(), metrics=["val_acc"])
    assert sorted(history["value"]) == [0.55, 0.65]
    assert set(history["metric"]) == {"val_acc"} and set(history["epoch"]) == {0}


def test_the_report_attaches_to_one_parent_run_of_the_grid(client_filled, tmp_path):
    _, store, _ = client_filled
    tracker = Tracker(store)
    exp = tracker.experiment_id("rep")
    (tmp_path / "report.md").write_text("# report\n")
    first = collect.log_to_mlflow(tracker, exp, "rep", [tmp_path / "report.md"])
    again = collect.log_to_mlflow(tracker, exp, "rep", [tmp_path / "report.md"])
    assert first == again
    client = MlflowClient(store)
    parent = client.get_run(first)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "grid:rep"
    assert parent.data.tags[tags.GRID_REPORT] == "true" and parent.data.tags[tags.GRID] == "rep"
    assert [a.path for a in client.list_artifacts(first, "report")] == ["report/report.md"]


def test_each_dataset_is_ranked_by_its_metric(by_metric, make_report, tmp_path):
    grid, store = by_metric
    rep, _ = make_report(grid, store, tmp_path)
    assert rep.metric == "accuracy; mean per-class accuracy on digits"
    means, best = rep.table.wide("mean"), rep.table.wide("best")
    assert means.loc[("digits", "test_resnet"), "scratch"] == pytest.approx(0.75)  # its mean per-class acc
    assert means.loc[("synthetic", "test_resnet"), "linear_probe"] == pytest.approx(0.90)  # accuracy
    assert (
        best.loc[("digits", "test_resnet"), "scratch"]
        and best.loc[("synthetic", "test_resnet"), "linear_probe"]
    )
    assert "## Test accuracy; mean per-class accuracy on digits" in rp.to_markdown(rep)
    checks = rep.reported.set_index("configuration")["check"].to_dict()
    assert checks == {
        "digits/test_resnet/linear_probe/sgd/none": "OUTSIDE",
        "digits/test_resnet/scratch/sgd/none": "inside",
    }
