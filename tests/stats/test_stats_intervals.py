"""Intervals over replicates equal scipy's, cover what they claim, and never invent one from n = 1."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tlbench.errors import TlbenchError
from tlbench.stats import StatsError, Summary, format_mean_ci, summarize, summarize_frame

VALUES = [0.912, 0.905, 0.918, 0.899, 0.921]


def replicates() -> pd.DataFrame:
    """Two configurations: A with 3 seeds, B with 2 of its 3 (seed 1 failed), C with one."""
    rows = [
        ("A", 0, 0.90),
        ("A", 1, 0.91),
        ("A", 2, 0.93),
        ("B", 0, 0.80),
        ("B", 2, 0.84),
        ("C", 0, 0.70),
    ]
    df = pd.DataFrame(rows, columns=["config", "seed", "value"])
    df["dataset"] = "digits"
    df["strategy"] = df["config"].map({"A": "finetune", "B": "linear_probe", "C": "lp_ft"})
    return df


def test_t_interval_equals_scipy():
    s = summarize(VALUES, level=0.95)
    low, high = stats.t.interval(0.95, len(VALUES) - 1, loc=np.mean(VALUES), scale=stats.sem(VALUES))
    assert (s.n, s.method) == (5, "t")
    assert s.mean == pytest.approx(np.mean(VALUES))
    assert s.std == pytest.approx(np.std(VALUES, ddof=1))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_t_interval_at_another_level_equals_scipy():
    s = summarize(VALUES, level=0.9)
    low, high = stats.t.interval(0.9, 4, loc=np.mean(VALUES), scale=stats.sem(VALUES))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_bootstrap_interval_equals_scipy_percentile_bootstrap():
    s = summarize(VALUES, ci="bootstrap", n_boot=2000, seed=7)
    ref = stats.bootstrap(
        (np.array(VALUES),),
        np.mean,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(7),
    ).confidence_interval
    assert s.method == "bootstrap"
    assert (s.ci_low, s.ci_high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    assert summarize(VALUES, ci="bootstrap", n_boot=2000, seed=7) == s  # seeded: reproducible


def test_one_replicate_gives_no_interval_and_no_plus_minus():
    s = summarize([0.9])
    assert s.n == 1 and s.mean == 0.9
    assert math.isnan(s.std) and math.isnan(s.ci_low) and math.isnan(s.ci_high)
    assert format_mean_ci(s) == "0.900"
    assert "±" not in format_mean_ci(summarize([0.9], ci="bootstrap"))


def test_missing_replicates_are_dropped_not_zeros():
    s = summarize([0.9, np.nan, 0.92])
    assert s.n == 2 and s.mean == pytest.approx(0.91)
    assert summarize([]).n == 0 and math.isnan(summarize([]).mean)
    assert format_mean_ci(summarize([])) == "n/a"


def test_constant_replicates_give_a_point_interval():
    for ci in ("t", "bootstrap"):
        s = summarize([0.5, 0.5, 0.5], ci=ci)
        assert (s.ci_low, s.ci_high) == (0.5, 0.5)


def test_format_shows_the_ci_half_width():
    s = Summary(n=5, mean=0.9123, std=0.01, ci_low=0.9043, ci_high=0.9203, method="t")
    assert format_mean_ci(s) == "0.912 ± 0.008"
    assert format_mean_ci(s, digits=2) == "0.91 ± 0.01"
    row = pd.Series({"n": 5, "mean": 0.9123, "ci_low": 0.9043, "ci_high": 0.9203})
    assert format_mean_ci(row) == "0.912 ± 0.008"


def test_format_writes_an_asymmetric_interval_out():
    s = Summary(n=5, mean=0.91, std=0.01, ci_low=0.89, ci_high=0.915, method="bootstrap")
    assert format_mean_ci(s) == "0.910 [0.890, 0.915]"


def test_bad_arguments_raise_stats_error():
    with pytest.raises(StatsError, match="ci must be"):
        summarize(VALUES, ci="bca")  # type: ignore[arg-type]
    with pytest.raises(TlbenchError, match="level"):
        summarize(VALUES, level=95)
    with pytest.raises(ValueError, match="needs the column"):
        summarize_frame(replicates(), value="test_acc")


def test_summarize_frame_one_row_per_config_with_axis_columns():
    out = summarize_frame(replicates())
    assert list(out.columns) == ["config", "dataset", "strategy", "n", "mean", "std", "ci_low", "ci_high"]
    assert list(out["config"]) == ["A", "B", "C"]
    assert list(out["n"]) == [3, 2, 1]
    a = out.set_index("config").loc["A"]
    low, high = stats.t.interval(0.95, 2, loc=np.mean([0.9, 0.91, 0.93]), scale=stats.sem([0.9, 0.91, 0.93]))
    assert (a["ci_low"], a["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    b = out.set_index("config").loc["B"]
    assert b["mean"] == pytest.approx(0.82) and np.isfinite(b["ci_low"])
    c = out.set_index("config").loc["C"]
    assert math.isnan(c["ci_low"]) and format_mean_ci(c) == "0.700"


def test_summarize_frame_groups_by_an_axis_and_drops_varying_columns():
    out = summarize_frame(replicates(), by=["dataset"])
    assert list(out.columns) == ["dataset", "n", "mean", "std", "ci_low", "ci_high"]  # strategy varies
    assert out.loc[0, "n"] == 6


def _coverage(draws: np.ndarray, true_mean: float, **kwargs) -> float:
    hits = 0
    for i, d in enumerate(draws):
        s = summarize(d, seed=i, **kwargs)
        hits += s.ci_low <= true_mean <= s.ci_high
    return hits / len(draws)


def test_coverage_t_is_nominal_and_bootstrap_under_covers_at_n5():
    """2,000 draws of n = 5 from N(0.9, 0.02²): the 95 % t interval covers ~95 %, the bootstrap less."""
    rng = np.random.default_rng(20240515)
    draws = rng.normal(0.9, 0.02, size=(2000, 5))
    t_cov = _coverage(draws, 0.9, ci="t")
    boot_cov = _coverage(draws, 0.9, ci="bootstrap", n_boot=500)
    print(f"coverage at n=5: t {t_cov:.3f}, percentile bootstrap {boot_cov:.3f}")
    assert 0.93 <= t_cov <= 0.97
    assert boot_cov < 0.92 and boot_cov < t_cov
