"""Pure pandas: pivots, best-per-row marks, axis effects, published and tuned numbers side by side.

Frames are made by hand here; only the pivot-by-any-axes test reads the session's real store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pytest

from tlbench import report as rp
from tlbench.report import tables


def test_pivot_by_any_axes(filled, make_report, tmp_path):
    grid, store, _ = filled
    rep, _ = make_report(grid, store, tmp_path, rows=("strategy",), cols=("dataset", "optimizer"))
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


def _cells() -> pd.DataFrame:
    """Four cells of a 2 datasets x 2 strategies grid; one is missing, one ran twice as far."""
    return pd.DataFrame(
        {
            "cell": ["d2/lp", "d2/ft", "d1/lp", "d1/ft"],
            "id": ["i1", "i2", "i3", "i4"],
            "status": ["FINISHED", "FINISHED", "FINISHED", "MISSING"],
            "dataset": ["d2", "d2", "d1", "d1"],
            "backbone": ["b"] * 4,
            "strategy": ["lp", "ft", "lp", "ft"],
            "optimizer": ["sgd"] * 4,
            "augmentation": ["none"] * 4,
            "test_acc": [0.5, 0.9, 0.7, None],
            "best_val_acc": [0.55, 0.85, 0.75, None],
            "reported_test_acc": [None, 0.8, None, 0.6],
            "reported_best_val_acc": [None, None, None, None],
            "reported_source": [None, "paper", None, "blog"],
        }
    )


def test_pivot_keeps_grid_order_and_an_empty_slot_for_a_missing_cell():
    piv = tables.pivot(_cells(), ["dataset"], ["strategy"])
    assert list(piv.index) == ["d2", "d1"] and list(piv.columns) == ["lp", "ft"]  # not alphabetical
    assert piv.loc["d2", "ft"] == 0.9 and piv.loc["d1", "lp"] == 0.7
    assert pd.isna(piv.loc["d1", "ft"])
    averaged = tables.pivot(_cells(), ["backbone"], ["strategy"])
    assert averaged.loc["b", "lp"] == pytest.approx(0.6)  # cells sharing a slot are averaged


def test_best_mask_marks_each_rows_best_and_all_ties():
    piv = pd.DataFrame({"a": [0.5, 0.7, None], "b": [0.6, 0.7, None]})
    mask = tables.best_mask(piv)
    assert mask.values.tolist() == [[False, True], [True, True], [False, False]]


def test_axis_effects_skip_an_axis_with_one_value():
    eff = tables.axis_effects(_cells())
    assert set(eff["axis"]) == {"dataset", "strategy"}
    lp = eff[(eff["axis"] == "strategy") & (eff["value"] == "lp")].iloc[0]
    assert lp["count"] == 2 and lp["mean"] == pytest.approx(0.6)
    ft = eff[(eff["axis"] == "strategy") & (eff["value"] == "ft")].iloc[0]
    assert ft["count"] == 1  # the missing cell does not count
    none = tables.axis_effects(_cells().assign(status="MISSING"))
    assert none.empty and list(none.columns) == ["axis", "value", "count", "mean", "std", "min", "max"]


def test_tuned_vs_untuned_lines_up_both_runs_with_the_gain():
    tuned = pd.DataFrame(
        [
            {
                "id": "i1",
                "cell": "d2/lp",
                "tuned_test_acc": 0.6,
                "untuned_lr": "0.05",
                "tuned_lr": "0.2",
                "untuned_batch": "32",
                "tuned_batch": "16",
                "hp_source": "tuned",
            },
            {
                "id": "i4",
                "cell": "d1/ft",
                "tuned_test_acc": 0.8,
                "untuned_lr": None,
                "tuned_lr": "0.1",
                "untuned_batch": None,
                "tuned_batch": "64",
                "hp_source": "tuned",
            },
        ],
        dtype=object,
    )
    out = tables.tuned_vs_untuned(tuned, _cells())
    assert list(out.columns) == [
        "cell",
        "untuned_test_acc",
        "tuned_test_acc",
        "gain",
        "untuned_lr",
        "tuned_lr",
        "untuned_batch",
        "tuned_batch",
        "hp_source",
    ]
    first, second = out.to_dict("records")
    assert first["gain"] == pytest.approx(0.1) and first["tuned_lr"] == "0.2"
    assert pd.isna(second["untuned_test_acc"]) and pd.isna(second["gain"])  # the plain cell never ran
    assert tables.tuned_vs_untuned(pd.DataFrame(dtype=object), _cells()).empty


def test_epoch_table_puts_configurations_down_and_epochs_across():
    history = pd.DataFrame(
        {
            "cell": ["a", "a", "b", "b", "a"],
            "dataset": ["d"] * 5,
            "epoch": [0, 1, 0, 1, 0],
            "metric": ["val_acc"] * 4 + ["train_loss"],
            "value": [0.1, 0.2, 0.3, 0.4, 9.0],
        }
    )
    table = tables.epoch_table(history)
    assert (
        table.loc[("d", "b"), 1] == 0.4 and table.loc[("d", "a"), 0] == 0.1 and list(table.columns) == [0, 1]
    )
    assert tables.epoch_table(history, "test_acc").empty


@dataclass
class _Cell:
    """What ``summary_frame`` reads of a cell."""

    name: str
    id: str
    axes: dict[str, Any] = field(default_factory=dict)

    def axis_values(self) -> dict[str, Any]:
        return self.axes


def test_summary_frame_has_one_row_per_cell_with_counts_people_read():
    rows = [
        (
            _Cell("d/a", "i1", {"dataset": "d"}),
            "FINISHED",
            {"test_acc": 0.9, "params_trainable": 37_400.0, "params_total": 11_700_000.0},
            "",
        ),
        (_Cell("d/b", "i2", {"dataset": "d"}), "FAILED", {}, "out of memory\ntraceback"),
    ]
    df = rp.summary_frame(rows)
    assert df["cell"].tolist() == ["d/a", "d/b"] and df["dataset"].tolist() == ["d", "d"]
    assert df.loc[0, "trainable"] == "37k of 11.7M" and pd.isna(df.loc[1, "trainable"])
    assert df.loc[1, "reason"] == "out of memory" and df.loc[0, "reason"] == ""
    assert set(tables.HEADLINE_METRICS) <= set(df.columns)
    assert [tables.param_count(n) for n in (970, 1_500, 37_400, 11_700_000)] == [
        "970",
        "1.5k",
        "37k",
        "11.7M",
    ]
    assert list(tables.cell_summary(df).columns)[:3] == ["cell", "status", "test_acc"]
