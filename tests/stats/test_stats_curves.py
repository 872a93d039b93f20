"""Learning-curve bands: the t interval per (config, epoch), over the runs that reached the epoch."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tlbench.stats import StatsError, curve_band


def history() -> pd.DataFrame:
    """Config A: 3 seeds × 3 epochs, but seed 2 stopped after epoch 1; config B: one seed."""
    rows = []
    for seed, curve in enumerate([[0.5, 0.7, 0.80], [0.52, 0.71, 0.82], [0.48, 0.69]]):
        rows += [("A", seed, epoch, v) for epoch, v in enumerate(curve, start=1)]
    rows += [("B", 0, epoch, v) for epoch, v in enumerate([0.3, 0.4, 0.5], start=1)]
    return pd.DataFrame(rows, columns=["config", "seed", "epoch", "val_acc"])


def test_band_is_the_t_interval_per_epoch():
    band = curve_band(history()).set_index(["config", "epoch"])
    assert list(band.columns) == ["n", "mean", "std", "ci_low", "ci_high"]
    x = np.array([0.7, 0.71, 0.69])
    low, high = stats.t.interval(0.95, 2, loc=x.mean(), scale=stats.sem(x))
    row = band.loc[("A", 2)]
    assert row["n"] == 3 and row["mean"] == pytest.approx(x.mean())
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))


def test_n_falls_where_runs_stopped_and_one_run_has_no_band():
    band = curve_band(history()).set_index(["config", "epoch"])
    assert band.loc[("A", 3), "n"] == 2 and np.isfinite(band.loc[("A", 3), "ci_low"])
    assert band.loc[("B", 2), "n"] == 1 and math.isnan(band.loc[("B", 2), "ci_low"])
    assert band.loc[("B", 2), "mean"] == pytest.approx(0.4)


def test_band_rows_are_sorted_by_config_then_epoch():
    band = curve_band(history().sample(frac=1, random_state=0))
    assert list(zip(band["config"], band["epoch"], strict=True)) == [
        ("A", 1),
        ("A", 2),
        ("A", 3),
        ("B", 1),
        ("B", 2),
        ("B", 3),
    ]


def test_missing_column_is_a_stats_error():
    with pytest.raises(StatsError, match="curve_band needs the column"):
        curve_band(history(), value="train_loss")
