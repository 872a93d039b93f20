"""Figures from frames alone: one file per figure the data allows, none for what is empty."""

from __future__ import annotations

import pandas as pd

from tlbench.report import tables
from tlbench.report.figures import report_figures


def test_every_figure_from_hand_made_frames(tmp_path):
    cells = pd.DataFrame(
        {
            "cell": ["d/b/lp", "d/b/ft", "e f/b/lp", "e f/b/ft"],
            "status": ["FINISHED", "FINISHED", "FINISHED", "FAILED"],
            "dataset": ["d", "d", "e f", "e f"],
            "backbone": ["b"] * 4,
            "strategy": ["lp", "ft", "lp", "ft"],
            "optimizer": ["sgd"] * 4,
            "augmentation": ["none"] * 4,
            "test_acc": [0.5, 0.9, 0.7, None],
            "train_time_s": [1.0, 3.0, 2.0, None],
        }
    )
    history = pd.DataFrame(
        {
            "cell": ["d/b/lp", "d/b/lp", "e f/b/lp", "e f/b/lp"],
            "dataset": ["d", "d", "e f", "e f"],
            "epoch": [0, 1, 0, 1],
            "metric": ["val_acc"] * 4,
            "value": [0.3, 0.5, 0.4, 0.6],
        }
    )
    piv = tables.pivot(cells, ["dataset"], ["strategy"])
    files = report_figures(cells, history, piv, tables.axis_effects(cells), tmp_path)
    assert {k: p.name for k, p in files.items()} == {
        "learning curves: d": "curves_d.png",
        "learning curves: e f": "curves_e_f.png",
        "accuracy heatmap": "heatmap.png",
        "effect of each axis": "axes.png",
        "accuracy vs train time": "pareto.png",
    }
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in files.values())


def test_no_finished_cells_no_figures(tmp_path):
    cells = pd.DataFrame(
        {"cell": ["d/a"], "status": ["MISSING"], "dataset": ["d"], "test_acc": [None], "train_time_s": [None]}
    )
    history = pd.DataFrame(columns=["cell", "dataset", "epoch", "metric", "value"])
    piv = pd.DataFrame({"lp": [float("nan")]}, index=["d"])
    effects = pd.DataFrame(columns=["axis", "value", "count", "mean", "std", "min", "max"])
    assert report_figures(cells, history, piv, effects, tmp_path) == {}
    assert list(tmp_path.iterdir()) == []
