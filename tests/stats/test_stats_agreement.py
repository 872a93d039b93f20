"""Score/result agreement: weighted τ and Pearson equal scipy's on the means; the bootstrap CI and top-1 hit."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tlbench.stats.agreement import Agreement, agreement
from tlbench.stats.errors import StatsError


def make_pairs(
    scores: dict[str, float],
    results: dict[str, float],
    n_seeds: int = 5,
    noise: float = 0.0,
    score_noise: float = 0.0,
    rng_seed: int = 0,
) -> pd.DataFrame:
    """One row per (backbone, seed): result = the backbone's mean + a shared seed effect + noise."""
    rng = np.random.default_rng(rng_seed)
    seed_effect = rng.normal(0, noise, n_seeds)
    rows = []
    for b in scores:
        for s in range(n_seeds):
            score = scores[b] + (rng.normal(0, score_noise) if score_noise else 0.0)
            result = results[b] + seed_effect[s] + (rng.normal(0, noise) if noise else 0.0)
            rows.append({"backbone": b, "seed": s, "score": score, "result": result})
    return pd.DataFrame(rows)


def means(pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    g = pairs.dropna(subset=["score", "result"]).groupby("backbone", sort=True)
    return g["score"].mean().to_numpy(), g["result"].mean().to_numpy()


SIX_SCORES = {f"b{i}": float(i) for i in range(6)}


def test_weighted_tau_and_pearson_equal_scipy_on_the_means() -> None:
    rng = np.random.default_rng(7)
    names = [f"net{i}" for i in range(6)]
    pairs = make_pairs(
        dict(zip(names, rng.normal(size=6), strict=True)),
        dict(zip(names, rng.uniform(0.6, 0.9, size=6), strict=True)),
        noise=0.01,
        score_noise=0.1,
    )
    res = agreement(pairs)
    x, y = means(pairs)
    assert res.weighted_tau == pytest.approx(stats.weightedtau(x, y).statistic, abs=1e-12)
    assert res.pearson == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert (res.n_backbones, res.n_seeds) == (6, 5)
    assert isinstance(res, Agreement)


def test_identical_and_reversed_orderings_give_scipys_plus_and_minus_one() -> None:
    up = {b: 0.5 + 0.05 * v for b, v in SIX_SCORES.items()}
    down = {b: 0.9 - 0.05 * v for b, v in SIX_SCORES.items()}
    same, reversed_ = agreement(make_pairs(SIX_SCORES, up)), agreement(make_pairs(SIX_SCORES, down))
    x = np.array(list(SIX_SCORES.values()))
    assert same.weighted_tau == stats.weightedtau(x, 0.5 + 0.05 * x).statistic
    assert same.weighted_tau == pytest.approx(1.0)
    assert reversed_.weighted_tau == stats.weightedtau(x, 0.9 - 0.05 * x).statistic
    assert reversed_.weighted_tau == pytest.approx(-1.0)


def test_tied_means_are_handled_as_scipy_does() -> None:
    """A seed-independent score repeated over different seed counts still ties exactly."""
    scores = {"a": 0.1, "b": 0.1, "c": 0.3, "d": 0.7}
    results = {"a": 0.8, "b": 0.7, "c": 0.85, "d": 0.9}
    pairs = make_pairs(scores, results, n_seeds=7)
    pairs = pairs[~((pairs["backbone"] == "b") & (pairs["seed"] >= 3))]  # b keeps 3 seeds, a 7
    res = agreement(pairs)
    x = np.array([0.1, 0.1, 0.3, 0.7])
    assert res.weighted_tau == stats.weightedtau(x, [0.8, 0.7, 0.85, 0.9]).statistic


def test_ci_contains_the_estimate_and_is_reproducible() -> None:
    results = {b: 0.6 + 0.04 * v for b, v in SIX_SCORES.items()}
    pairs = make_pairs(SIX_SCORES, results, noise=0.02, score_noise=0.3)
    first, again = agreement(pairs, seed=3), agreement(pairs, seed=3)
    assert first.tau_ci == again.tau_ci and first.pearson_ci == again.pearson_ci
    assert first.tau_ci[0] <= first.weighted_tau <= first.tau_ci[1]
    assert first.pearson_ci[0] <= first.pearson <= first.pearson_ci[1]
    assert agreement(pairs, seed=4).pearson_ci != first.pearson_ci  # τ is discrete: its CI may repeat


def test_one_seed_gives_no_interval() -> None:
    results = {b: 0.6 + 0.04 * v for b, v in SIX_SCORES.items()}
    res = agreement(make_pairs(SIX_SCORES, results, n_seeds=1, noise=0.02))
    assert math.isfinite(res.weighted_tau) and math.isfinite(res.pearson)
    assert all(math.isnan(v) for v in (*res.tau_ci, *res.pearson_ci))
    assert res.n_seeds == 1


def test_ci_narrows_as_seeds_agree() -> None:
    results = {b: 0.6 + 0.04 * v for b, v in SIX_SCORES.items()}
    width = {}
    for noise in (0.05, 0.005, 0.0):
        res = agreement(make_pairs(SIX_SCORES, results, noise=noise, score_noise=0.0))
        width[noise] = res.tau_ci[1] - res.tau_ci[0]
    assert width[0.05] > width[0.005] >= width[0.0]
    clean = agreement(make_pairs(SIX_SCORES, results))  # noise-free, well separated
    assert clean.tau_ci == pytest.approx((1.0, 1.0))
    assert clean.pearson_ci == pytest.approx((1.0, 1.0))


def test_fewer_than_three_backbones_give_nan() -> None:
    res = agreement(make_pairs({"a": 1.0, "b": 2.0}, {"a": 0.7, "b": 0.8}, noise=0.01))
    assert math.isnan(res.weighted_tau) and math.isnan(res.pearson)
    assert all(math.isnan(v) for v in (*res.tau_ci, *res.pearson_ci))
    assert res.n_backbones == 2 and res.best == "b" and res.predicted_best == "b"


def test_constant_result_side_gives_nan_pearson() -> None:
    res = agreement(make_pairs({"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 0.7, "b": 0.7, "c": 0.7}))
    assert math.isnan(res.pearson) and math.isnan(res.pearson_ci[0])


def test_top1_hit_when_the_favourite_is_statistically_tied_with_the_best() -> None:
    """'fav' (highest score) and 'top' differ by far less than their seed noise over 5 seeds."""
    scores = {"fav": 3.0, "top": 2.0, "low": 1.0}
    results = {"fav": 0.800, "top": 0.801, "low": 0.60}
    res = agreement(make_pairs(scores, results, noise=0.02, rng_seed=1))
    assert res.predicted_best == "fav"
    assert res.best in ("fav", "top") and set(res.tied) == {"fav", "top"}
    assert res.tied[0] == res.best
    assert res.top1_hit is True


def test_top1_miss_when_one_backbone_is_clearly_better() -> None:
    scores = {"fav": 3.0, "top": 2.0, "low": 1.0}
    results = {"fav": 0.70, "top": 0.90, "low": 0.60}
    res = agreement(make_pairs(scores, results, noise=0.005, rng_seed=1))
    assert (res.predicted_best, res.best, res.tied) == ("fav", "top", ("top",))
    assert res.top1_hit is False


def test_missing_rows_are_dropped() -> None:
    scores = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    results = {"a": 0.6, "b": 0.7, "c": 0.65, "d": 0.8}
    pairs = make_pairs(scores, results, noise=0.01)
    holed = pairs.copy()
    holed.loc[(holed["backbone"] == "a") & (holed["seed"] == 0), "result"] = np.nan
    holed.loc[(holed["backbone"] == "c") & (holed["seed"] == 4), "score"] = np.nan
    ghost = pd.DataFrame([{"backbone": "ghost", "seed": 0, "score": 9.0, "result": np.nan}])
    res = agreement(pd.concat([holed, ghost], ignore_index=True))
    expected = agreement(holed.dropna())
    assert res == expected
    assert res.n_backbones == 4 and res.predicted_best == "d"


def test_no_results_gives_no_hit() -> None:
    pairs = pd.DataFrame({"backbone": ["a", "b"], "seed": [0, 0], "score": [1.0, 2.0], "result": np.nan})
    res = agreement(pairs)
    assert res.top1_hit is None and res.predicted_best == "b" and res.best == "" and res.tied == ()
    assert math.isnan(res.weighted_tau) and res.n_backbones == 0


def test_missing_columns_and_empty_frames_raise() -> None:
    with pytest.raises(StatsError, match="result"):
        agreement(pd.DataFrame({"backbone": ["a"], "seed": [0], "score": [1.0]}))
    with pytest.raises(StatsError, match="no rows"):
        agreement(pd.DataFrame(columns=["backbone", "seed", "score", "result"]))
    with pytest.raises(StatsError, match="level"):
        agreement(make_pairs({"a": 1.0}, {"a": 0.5}), level=95)
