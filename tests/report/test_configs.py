"""A configuration's replicates summarised: n, mean, std and the 95 % interval equal scipy's over
the values the store holds; failures counted apart; provenance and test = val flagged."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from synthetic_store import build_report, by_config


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
