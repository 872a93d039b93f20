"""The Python API a notebook uses: a grid run, its results as DataFrames, the report with its
figures; errors raise (never exit the interpreter)."""

from __future__ import annotations

import pandas as pd
import pytest

import tlbench
from tlbench.errors import TlbenchError

GRID = """
name: apigrid
train: {epochs: 2, batch_size: 32, image_size: 16, lr: 0.05}
seeds: 2
datasets:
  - {name: synthetic, params: {classes: 3, train_per_class: 20, val_per_class: 6, test_per_class: 6, image_size: 16}}
backbones: [{name: test_resnet, weights: none}]
strategies: [linear_probe, scratch]
optimizers: [sgd]
augmentations: [none]
"""


@pytest.mark.slow
def test_a_grid_from_python_to_dataframes_and_figures(write_grid, store, tmp_path):
    grid = tlbench.load_grid(write_grid(GRID, "apigrid.yaml"))
    assert grid.name == "apigrid" and len(grid.cells) == 4
    run = tlbench.run_grid(grid, tracking_uri=store)
    assert {o.status for o in run.outcomes} == {"FINISHED"} and run.failed == []
    assert list(run.frame()["status"]) == ["FINISHED"] * 4
    again = tlbench.run_grid(grid, tracking_uri=store)  # finished cells are skipped, not retrained
    assert {o.reason for o in again.outcomes} == {"finished"}

    res = tlbench.results(grid, tracking_uri=store)
    assert isinstance(res.cells, pd.DataFrame) and res.cells["run_id"].notna().all()
    configs = res.configurations.set_index("config")
    assert len(configs) == 2 and set(configs["n"]) == {2}
    assert (configs["ci_low"] <= configs["mean"]).all() and (configs["mean"] <= configs["ci_high"]).all()
    assert set(res.comparisons[["a", "b"]].iloc[0]) == {"linear_probe", "scratch"}

    rep = tlbench.report_grid(grid, tracking_uri=store, out=tmp_path / "rep", formats=["md", "csv"])
    assert (tmp_path / "rep" / "report.md").exists() and rep.files
    assert "accuracy heatmap" in rep.figures and hasattr(rep.figures["accuracy heatmap"], "savefig")
    assert rep.table is not None and rep.table.replicated
    url = tlbench.ui_url(grid, tracking_uri=store)
    assert url.startswith("http://127.0.0.1:5000/#/experiments/") and "viewStateShareKey" in url


def test_errors_raise_instead_of_exiting(write_grid, store):
    grid = tlbench.load_grid(write_grid(GRID, "apigrid.yaml"))
    with pytest.raises(tlbench.api.SelectionError, match="matches none"):
        tlbench.expand_grid(grid, ["nothing/*"])
    with pytest.raises(TlbenchError, match="unknown axis 'datset'"):
        tlbench.run_grid(grid, tracking_uri=store, race_by=["datset"])
    with pytest.raises(TlbenchError, match="no-such-grid"):
        tlbench.load_grid("no-such-grid")
    with pytest.raises(TlbenchError, match="format 'pdf'"):
        tlbench.report_grid(grid, tracking_uri=store, formats=["pdf"])


def test_the_package_re_exports_the_api():
    assert set(tlbench._API) <= set(tlbench.api.__all__)
    assert {f for f in tlbench.api.__all__ if f[0].islower()} <= set(tlbench._API)
    assert tlbench.run_grid is tlbench.api.run_grid
