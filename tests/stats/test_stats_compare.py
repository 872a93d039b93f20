"""Two-sample tests, ties with the best and pairwise comparisons equal scipy/statsmodels directly."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from tlbench.stats import StatsError, paired_or_welch, pairwise, ties_with_best

A = pd.Series([0.912, 0.905, 0.918, 0.899, 0.921], index=[0, 1, 2, 3, 4])
B = pd.Series([0.901, 0.899, 0.910, 0.895, 0.909], index=[0, 1, 2, 3, 4])


def row_group() -> pd.DataFrame:
    """One pivot row: four configurations, 'mid' lost seed 2."""
    values = {
        "best": [0.95, 0.96, 0.94],
        "close": [0.948, 0.955, 0.941],
        "worse": [0.80, 0.82, 0.81],
        "mid": [0.90, 0.93, None],
    }
    rows = [(config, seed, v) for config, vs in values.items() for seed, v in enumerate(vs) if v is not None]
    return pd.DataFrame(rows, columns=["config", "seed", "value"])


def grid() -> pd.DataFrame:
    """3 datasets × 3 strategies × 4 seeds, one backbone; a seed effect shared within a dataset.

    finetune beats linear_probe by 0.05 everywhere; lp_ft equals finetune except on 'pets', where it
    is 0.03 better; 'cars' has no lp_ft run at all.
    """
    rng = np.random.default_rng(3)
    effect = {"linear_probe": 0.0, "finetune": 0.05, "lp_ft": 0.05}
    rows = []
    for dataset, base in [("digits", 0.90), ("pets", 0.80), ("flowers", 0.70), ("cars", 0.60)]:
        seed_noise = rng.normal(0, 0.01, size=4)
        for strategy, e in effect.items():
            if dataset == "cars" and strategy == "lp_ft":
                continue
            bonus = 0.03 if (dataset == "pets" and strategy == "lp_ft") else 0.0
            for seed in range(4):
                v = base + e + bonus + seed_noise[seed] + rng.normal(0, 0.002)
                rows.append((f"{dataset}/{strategy}", seed, dataset, "resnet18", strategy, "sgd", "none", v))
    columns = ["config", "seed", "dataset", "backbone", "strategy", "optimizer", "augmentation", "value"]
    return pd.DataFrame(rows, columns=columns)


def test_paired_equals_ttest_rel_and_the_t_interval_of_differences():
    r = paired_or_welch(A, B)
    ref = stats.ttest_rel(A, B)
    d = A - B
    low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert (r.test, r.n_a, r.n_b, r.n_pairs) == ("paired t", 5, 5, 5)
    assert (r.statistic, r.p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    assert r.mean_diff == pytest.approx(d.mean())
    assert (r.diff_ci_low, r.diff_ci_high) == (pytest.approx(low), pytest.approx(high))


def test_paired_uses_only_shared_seeds():
    b = B.drop([1, 3])  # 3 shared seeds
    r = paired_or_welch(A, b)
    ref = stats.ttest_rel(A.loc[[0, 2, 4]], b.loc[[0, 2, 4]])
    assert (r.test, r.n_a, r.n_b, r.n_pairs) == ("paired t", 5, 3, 3)
    assert r.p == pytest.approx(ref.pvalue)


def test_welch_when_fewer_than_two_shared_seeds():
    b = B.set_axis([4, 10, 11, 12, 13])  # one shared seed
    r = paired_or_welch(A, b)
    ref = stats.ttest_ind(A, b, equal_var=False)
    low, high = CompareMeans(DescrStatsW(A.to_numpy()), DescrStatsW(b.to_numpy())).tconfint_diff(
        alpha=0.05, usevar="unequal"
    )  # Welch-Satterthwaite, computed by statsmodels
    assert (r.test, r.n_pairs) == ("Welch t", 1)
    assert (r.statistic, r.p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    assert r.mean_diff == pytest.approx(A.mean() - b.mean())
    assert (r.diff_ci_low, r.diff_ci_high) == (pytest.approx(low), pytest.approx(high))


def test_no_test_with_one_replicate():
    r = paired_or_welch(A, pd.Series([0.8], index=[9]))
    assert r.test == "none" and math.isnan(r.p) and math.isnan(r.diff_ci_low)
    assert r.mean_diff == pytest.approx(A.mean() - 0.8)
    assert math.isnan(paired_or_welch(A, pd.Series([], dtype=float)).mean_diff)


def test_missing_values_are_absent_replicates():
    b = B.copy()
    b.loc[[1, 3]] = np.nan
    assert paired_or_welch(A, b) == paired_or_welch(A, B.drop([1, 3]))


def test_duplicate_seeds_are_refused():
    with pytest.raises(StatsError, match="more than one value"):
        paired_or_welch(pd.Series([0.1, 0.2, 0.3], index=[0, 0, 1]), B)


def with_single(value: float) -> pd.DataFrame:
    return pd.concat([row_group(), pd.DataFrame({"config": ["single"], "seed": [0], "value": [value]})])


def test_ties_with_best_one_replicate_is_untested_and_a_tie():
    out = ties_with_best(with_single(0.5)).set_index("config")
    assert out.loc["best", "best"]
    assert not out.loc["single", "tested"] and out.loc["single", "tie"]
    assert out.loc["single", "test"] == "none" and math.isnan(out.loc["single", "p_holm"])
    assert not out.loc["worse", "tie"]  # the untested one does not count in Holm's family


def test_ties_with_best_a_single_replicate_can_be_best_by_mean():
    out = ties_with_best(with_single(0.99)).set_index("config")
    assert out.index[0] == "single" and out.loc["single", "best"]
    assert out["best"].sum() == 1
    assert (~out["tested"]).all() and out.drop("single")["tie"].all()


def test_ties_with_best_marks_significant_and_tied_configs():
    df = row_group()
    out = ties_with_best(df).set_index("config")
    s = {c: g.set_index("seed")["value"] for c, g in df.groupby("config")}
    assert out.index[0] == "best" and out.loc["best", "best"] and not out.loc["best", "tie"]
    raw = {
        "close": stats.ttest_rel(s["close"], s["best"]).pvalue,
        "worse": stats.ttest_rel(s["worse"], s["best"]).pvalue,
        "mid": stats.ttest_rel(s["mid"], s["best"].loc[[0, 1]]).pvalue,  # 2 of 3 seeds: paired over 2
    }
    adjusted = dict(zip(raw, multipletests(list(raw.values()), method="holm")[1], strict=True))
    for config in raw:
        assert out.loc[config, "p_raw"] == pytest.approx(raw[config])
        assert out.loc[config, "p_holm"] == pytest.approx(adjusted[config])
        assert out.loc[config, "tie"] == (adjusted[config] >= 0.05)
    assert out.loc["mid", "n"] == 2 and out.loc["mid", "test"] == "paired t"
    assert out.loc["close", "tie"] and not out.loc["worse", "tie"]
    assert math.isnan(out.loc["best", "p_raw"])
    assert list(out.columns) == ["mean", "n", "p_raw", "p_holm", "best", "tie", "tested", "test"]


def test_ties_with_best_lower_is_better():
    df = row_group().query("config in ['best', 'worse']")
    out = ties_with_best(df, higher_is_better=False)
    assert out.loc[0, "config"] == "worse" and out.loc[0, "best"]


def test_pairwise_one_value_raises_a_clear_error():
    df = grid().query("strategy == 'finetune'")
    with pytest.raises(StatsError, match="at least 2 values of 'strategy'.*1: \\['finetune'\\]"):
        pairwise(df, axis="strategy")


def test_pairwise_tests_the_per_group_differences_with_holm():
    """Over several groups the unit is the group: its seed-matched differences averaged, then a
    one-sample t-test over the groups (pooling seeds would count one group's luck several times)."""
    df = grid()
    out = pairwise(df, axis="strategy").set_index(["a", "b"])
    assert list(out.index) == [("finetune", "linear_probe"), ("finetune", "lp_ft"), ("linear_probe", "lp_ft")]
    key = ["dataset", "backbone", "optimizer", "augmentation", "seed"]
    wide = df.pivot_table(index=key, columns="strategy", values="value")
    raw = {}
    for a, b in out.index:
        both = wide[[a, b]].dropna()  # 'cars' has no lp_ft: its rows drop out of lp_ft pairs
        per_group = (both[a] - both[b]).groupby(level="dataset").mean()
        ref = stats.ttest_1samp(per_group, 0.0)
        raw[(a, b)] = ref.pvalue
        row = out.loc[(a, b)]
        assert row["test"] == "paired t over groups" and row["n_pairs"] == len(both)
        assert row["n_groups"] == len(per_group)
        assert row["p_raw"] == pytest.approx(ref.pvalue)
        assert row["mean_diff"] == pytest.approx(per_group.mean())
        ci = ref.confidence_interval()
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    holm = multipletests(list(raw.values()), method="holm")[1]
    assert out["p_holm"].to_numpy() == pytest.approx(holm)
    assert out.loc[("finetune", "linear_probe"), "n_groups"] == 4
    assert out.loc[("finetune", "lp_ft"), "n_groups"] == 3


def test_pairwise_does_not_count_one_groups_seeds_as_independent_findings():
    """a beats b by 0.03 on one dataset and ties on the other: the 8 pooled seed pairs look
    significant, the two groups do not."""
    rows = []
    for dataset, gap in [("digits", 0.03), ("pets", 0.0)]:
        for seed in range(4):
            noise = 0.001 * (seed - 1.5)
            rows += [
                (dataset, "a", seed, 0.8 + gap + noise),
                (dataset, "b", seed, 0.8 + noise + 0.0005 * (seed % 2)),
            ]
    df = pd.DataFrame(rows, columns=["dataset", "strategy", "seed", "value"])
    wide = df.pivot_table(index=["dataset", "seed"], columns="strategy", values="value")
    assert stats.ttest_rel(wide["a"], wide["b"]).pvalue < 0.05
    row = pairwise(df, axis="strategy").iloc[0]
    assert row["n_groups"] == 2 and row["p_raw"] > 0.2
    assert (row["wins"], row["ties"], row["losses"]) == (1, 1, 0)


def test_pairwise_over_one_group_pairs_its_seeds():
    df = grid().query("dataset == 'digits'")
    out = pairwise(df, axis="strategy").set_index(["a", "b"])
    row = out.loc[("finetune", "linear_probe")]
    a = df.query("strategy == 'finetune'").set_index("seed")["value"]
    b = df.query("strategy == 'linear_probe'").set_index("seed")["value"]
    assert row["test"] == "paired t" and row["n_groups"] == 1
    assert row["p_raw"] == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_pairwise_counts_wins_ties_losses_per_group():
    out = pairwise(grid(), axis="strategy").set_index(["a", "b"])
    tally = out[["wins", "ties", "losses"]]
    assert tally.loc[("finetune", "linear_probe")].tolist() == [4, 0, 0]
    assert tally.loc[("linear_probe", "lp_ft")].tolist() == [0, 0, 3]
    # finetune vs lp_ft: equal on digits and flowers (ties), lp_ft better on pets (a loss)
    assert tally.loc[("finetune", "lp_ft")].tolist() == [0, 2, 1]


def test_pairwise_welch_when_no_seed_matches():
    df = grid().query("dataset == 'digits'").copy()
    df.loc[df["strategy"] == "linear_probe", "seed"] += 100
    out = pairwise(df, axis="strategy").set_index(["a", "b"])
    row = out.loc[("finetune", "linear_probe")]
    a = df.query("strategy == 'finetune'")["value"]
    b = df.query("strategy == 'linear_probe'")["value"]
    assert row["test"] == "Welch t" and row["n_pairs"] == 0
    assert row["p_raw"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert out.loc[("finetune", "lp_ft"), "test"] == "paired t"


def test_pairwise_tolerates_a_missing_replicate():
    df = grid().drop(index=0)  # digits/linear_probe lost seed 0
    out = pairwise(df, axis="strategy").set_index(["a", "b"])
    assert out.loc[("finetune", "linear_probe"), "n_pairs"] == 15
    assert np.isfinite(out["p_raw"]).all()


def test_holm_equals_statsmodels_without_its_gc_collect(monkeypatch):
    """Holm's step-down p-values as statsmodels computes them (ties, p near 1, NaN kept), without
    the ``gc.collect()`` statsmodels' Holm branch runs on every call (seconds for a big report)."""
    import gc

    from tlbench.stats import holm

    rng = np.random.default_rng(0)
    for p in [rng.uniform(size=7), rng.uniform(0, 0.05, size=12), np.array([0.01, 0.01, 0.04, 0.9, 0.9])]:
        assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    out = holm([0.02, float("nan"), 0.01])
    assert math.isnan(out[1]) and out[[0, 2]] == pytest.approx(multipletests([0.02, 0.01], method="holm")[1])
    monkeypatch.setattr(gc, "collect", lambda *a: pytest.fail("holm ran gc.collect()"))
    holm([0.5, 0.01, 0.2])
