"""A configuration's replicates summarised: n, mean, std and the 95 % interval equal scipy's over
the values the store holds; failures counted apart; provenance and test = val flagged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from synthetic_store import build_report, by_config

from tlbench.report.configs import reported_vs_tlbench


def test_each_configuration_has_the_t_interval_of_its_finished_replicates(replicated):
    grid, store, values = replicated
    rep = build_report(grid, store)
    configs = rep.configs.set_index("config")
    assert len(configs) == 18  # summary runs are not configurations
    for config, runs in by_config(values).items():
        test = np.array([t for t, _, _ in runs])
        row = configs.loc[config]
        low, high = stats.t.interval(0.95, len(test) - 1, loc=test.mean(), scale=stats.sem(test))
        assert row["n"] == len(test)
        assert row["mean"] == pytest.approx(test.mean())
        assert row["std"] == pytest.approx(test.std(ddof=1))
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    failed = configs.loc["hymenoptera/test_resnet/linear_probe/adamw/none"]
    assert (failed["runs"], failed["n"], failed["status"]) == (5, 4, "FINISHED 4, FAILED 1")


def test_bootstrap_intervals_differ_from_t_and_hold_the_mean(replicated):
    grid, store, _ = replicated
    t, boot = build_report(grid, store).configs, build_report(grid, store, ci="bootstrap").configs
    assert (boot["ci_low"] <= boot["mean"]).all() and (boot["mean"] <= boot["ci_high"]).all()
    assert not np.allclose(t["ci_low"], boot["ci_low"])
    # a percentile bootstrap over 5 values is narrower than t's (it under-covers: the CLI says so)
    assert ((boot["ci_high"] - boot["ci_low"]) < (t["ci_high"] - t["ci_low"])).mean() > 0.8


def test_replicates_that_ran_differently_and_test_equal_val_are_flagged(replicated):
    grid, store, _ = replicated
    configs = build_report(grid, store).configs.set_index("config")
    drift = configs.loc["synthetic/test_resnet/scratch/sgd/none", "provenance"]
    assert drift == "env.torch 2.4.1 / 2.5.0"
    assert (configs["provenance"] != "").sum() == 1
    assert configs.loc[configs["dataset"] == "hymenoptera", "test_is_val"].all()
    assert not configs.loc[configs["dataset"] != "hymenoptera", "test_is_val"].any()


def _four_cells() -> pd.DataFrame:
    """Two published numbers: one for a finished cell, one for a cell that never ran."""
    return pd.DataFrame(
        {
            "cell": ["d2/lp", "d2/ft", "d1/lp", "d1/ft"],
            "status": ["FINISHED", "FINISHED", "FINISHED", "MISSING"],
            "test_acc": [0.5, 0.9, 0.7, None],
            "reported_test_acc": [None, 0.8, None, 0.6],
            "reported_source": [None, "paper", None, "blog"],
        }
    )


def test_reported_vs_tlbench_lists_published_numbers_even_for_missing_cells():
    rep = reported_vs_tlbench(_four_cells())
    assert rep["configuration"].tolist() == ["d2/ft", "d1/ft"]
    ft = rep.iloc[0]
    assert ft["source"] == "paper" and ft["reported"] == 0.8 and ft["tlbench"] == 0.9
    assert ft["difference"] == pytest.approx(0.1) and ft["check"] == "n/a (one seed)"
    missing = rep.iloc[1]
    assert missing["runs"] == "MISSING 1" and pd.isna(missing["difference"])
    assert missing["check"] == "no finished run"
    assert reported_vs_tlbench(_four_cells().drop(columns="reported_test_acc")).empty


def _replicated(values: dict[str, list[float]], reported: dict[str, float]) -> pd.DataFrame:
    rows = []
    for config, accs in values.items():
        for seed, acc in enumerate(accs):
            rows.append(
                {
                    "cell": f"{config}@s{seed}",
                    "config": config,
                    "status": "FINISHED",
                    "test_acc": acc,
                    "test_mean_per_class_acc": acc - 0.05,
                    "reported_test_acc": reported.get(config),
                    "reported_mean_per_class_acc": reported.get(config + "/per_class"),
                    "reported_source": "SimCLR Table 8",
                    "reported_protocol": "their own TF weights",
                }
            )
    return pd.DataFrame(rows)


def test_reported_numbers_are_checked_against_the_interval_over_seeds():
    df = _replicated(
        {"a": [0.90, 0.91, 0.92], "b": [0.70, 0.71, 0.69]},
        {"a": 0.91, "b": 0.80, "b/per_class": 0.65},
    )
    rep = reported_vs_tlbench(df).set_index(["configuration", "metric"])
    inside = rep.loc[("a", "test_acc")]
    assert inside["n"] == 3 and inside["ci_low"] < 0.91 < inside["ci_high"] and inside["check"] == "inside"
    assert inside["protocol"] == "their own TF weights" and inside["tlbench"] == pytest.approx(0.91)
    outside = rep.loc[("b", "test_acc")]
    assert outside["check"] == "OUTSIDE" and outside["difference"] == pytest.approx(-0.10)
    per_class = rep.loc[("b", "test_mean_per_class_acc")]  # beside the run's mean per-class accuracy
    assert per_class["tlbench"] == pytest.approx(0.65) and per_class["check"] == "inside"
