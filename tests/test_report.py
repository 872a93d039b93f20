"""Reports from a store filled by a real tiny grid run: values, missing cells, pivots, CSV, HTML."""

from __future__ import annotations

import shutil
import subprocess

import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from tlbench import report as rp
from tlbench.cli import main
from tlbench.grid import expand
from tlbench.spec import load_grid
from tlbench.tracking import Tracker

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


@pytest.fixture(scope="module")
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


def _report(grid, store, out, rows=("dataset", "backbone"), cols=("strategy",)):
    spec = load_grid(grid)
    cells = expand(spec)
    tracker = Tracker(store)
    exp = tracker.experiment_id(spec.name)
    return rp.build(cells, tracker, exp, grid=spec.name, rows=list(rows), cols=list(cols), out=out), tracker


def test_values_match_the_runs_and_missing_cells_show(filled, tmp_path):
    grid, store, _ = filled
    rep, tracker = _report(grid, store, tmp_path)
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
    # per-epoch table: one column per finished cell, epochs 0 and 1
    assert list(rep.epochs.index) == [0, 1] and len(rep.epochs.columns) == 3
    # axis effects: strategy has two values, each with its mean over datasets
    eff = rep.effects[rep.effects["axis"] == "strategy"].set_index("value")
    assert eff.loc["scratch", "count"] == 2
    assert eff.loc["scratch", "mean"] == pytest.approx(
        cells[cells["strategy"] == "scratch"]["test_acc"].mean()
    )


def test_reported_numbers_sit_beside_tlbench(filled, tmp_path):
    grid, store, _ = filled
    rep, _ = _report(grid, store, tmp_path)
    (row,) = rep.reported.to_dict("records")
    assert row["cell"] == "synthetic/test_resnet/scratch/sgd/none" and row["source"] == "a published table"
    got = rep.cells.set_index("cell").loc[row["cell"], "test_acc"]
    assert row["reported"] == 0.5 and row["tlbench"] == got
    assert row["difference"] == pytest.approx(got - 0.5)
    assert "Reported elsewhere vs tlbench" in rp.to_markdown(rep)


def test_tuned_runs_sit_beside_untuned_and_stay_out_of_the_main_table(filled, tmp_path):
    import dataclasses

    from tlbench.executor.cell import run_cell

    grid, store, _ = filled
    spec = load_grid(grid)
    cell = next(c for c in expand(spec) if c.name == "synthetic/test_resnet/scratch/sgd/none")
    tracker = Tracker(store)
    exp = tracker.experiment_id(spec.name)
    tuned_cell = dataclasses.replace(cell, train=cell.train.model_copy(update={"lr": 0.2, "batch_size": 16}))
    outcome = run_cell(tuned_cell, tracker, exp, variant="tuned")
    assert outcome.status == "FINISHED"
    rep, _ = _report(grid, store, tmp_path)
    (row,) = rep.tuned.to_dict("records")
    assert row["cell"] == cell.name and row["tuned_lr"] == "0.2" and row["untuned_lr"] == "0.05"
    assert row["tuned_batch"] == "16" and row["tuned_test_acc"] == outcome.metrics["test_acc"]
    # the plain cell's row still shows the untuned run; a tuned run never counts as "the" cell
    plain = rep.cells.set_index("cell").loc[cell.name]
    assert plain["run_id"] != outcome.run_id
    assert tracker.finished_runs(exp)[cell.id].info.run_id == plain["run_id"]
    assert "Tuned vs untuned" in rp.to_html(rep)


def test_pivot_by_any_axes(filled, tmp_path):
    grid, store, _ = filled
    rep, _ = _report(grid, store, tmp_path, rows=("strategy",), cols=("dataset", "optimizer"))
    assert rep.pivot.index.name == "strategy"
    assert list(rep.pivot.columns) == [("synthetic", "sgd"), ("digits-10pct", "sgd")]
    with pytest.raises(ValueError, match="unknown axis"):
        rp.pivot(rep.cells, ["nope"], ["strategy"])


def test_pareto_front():
    df = pd.DataFrame(
        {
            "cell": list("abcd"),
            "status": ["FINISHED"] * 4,
            "train_time_s": [1, 2, 3, 4],
            "test_acc": [0.5, 0.4, 0.8, 0.7],
        }
    )
    assert rp.pareto_front(df) == ["a", "c"]


def test_cli_report_writes_csv_that_round_trips_md_and_html(filled, tmp_path):
    grid, store, _ = filled
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["report", "--grid", str(grid), "--tracking-uri", store, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    cells = pd.read_csv(out / "cells.csv")
    rep, _ = _report(grid, store, tmp_path / "again")
    pd.testing.assert_series_equal(cells["test_acc"], rep.cells["test_acc"], check_names=False)
    assert set(cells["status"]) == {"FINISHED", "MISSING"}
    piv = pd.read_csv(out / "pivot_test_acc.csv", index_col=[0, 1])
    assert piv.loc[("synthetic", "test_resnet"), "scratch"] == pytest.approx(
        rep.pivot.loc[("synthetic", "test_resnet"), "scratch"]
    )
    md = (out / "report.md").read_text()
    assert "| dataset | backbone | linear_probe | scratch |" in md and "MISSING" in md
    page = (out / "report.html").read_text()
    assert page.count("<table>") >= 5 and page.count("data:image/png;base64,") >= 3
    # the grid's parent run holds the report
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("rep")
    parents = client.search_runs([exp.experiment_id], "tags.`tlbench.grid_report` = 'true'")
    assert len(parents) == 1
    names = {a.path for a in client.list_artifacts(parents[0].info.run_id, "report")}
    assert {"report/report.html", "report/report.md", "report/cells.csv"} <= names


def test_bad_axis_is_a_clear_error(filled):
    grid, store, _ = filled
    result = CliRunner().invoke(
        main, ["report", "--grid", str(grid), "--tracking-uri", store, "--rows", "datset"]
    )
    assert result.exit_code == 2
    assert "unknown axis 'datset'" in result.output


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_html_renders_in_headless_chromium(filled, tmp_path):
    grid, store, _ = filled
    out = tmp_path / "html"
    result = CliRunner().invoke(
        main,
        [
            "report",
            "--grid",
            str(grid),
            "--tracking-uri",
            store,
            "--out",
            str(out),
            "--format",
            "html",
            "--no-mlflow",
        ],
    )
    assert result.exit_code == 0, result.output
    page = out / "report.html"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert "<table>" in dom.stdout and "data:image/png;base64" in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, *flags, "--window-size=1400,3000", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 20_000
    from matplotlib.image import imread

    img = imread(shot)
    # the page is not blank: plots bring many distinct colours, tables many dark (text) pixels
    flat = (img[..., :3] * 255).astype(int).reshape(-1, 3)
    colours = {tuple(c) for c in flat[::7]}
    assert len(colours) > 200
    assert (flat.sum(axis=1) < 200).mean() > 0.005
