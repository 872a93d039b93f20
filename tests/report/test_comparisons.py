"""--compare AXIS: every pair equal to stats.pairwise over the store's replicates; ranks with
Friedman; an axis with one value is a clear error (exit 2), not an empty section."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats
from synthetic_store import build_report

from tlbench.cli import main


def _frame(values: dict) -> pd.DataFrame:
    rows = []
    for name, (test, _, _) in values.items():
        config, seed = name.rsplit("@s", 1)
        dataset, backbone, strategy, optimizer, augmentation = config.split("/")
        rows.append((config, int(seed), dataset, backbone, strategy, optimizer, augmentation, test))
    cols = ["config", "seed", "dataset", "backbone", "strategy", "optimizer", "augmentation", "value"]
    return pd.DataFrame(rows, columns=cols)


def test_compare_equals_the_per_group_tests_over_the_stores_replicates(replicated):
    grid, store, values = replicated
    cmp = build_report(grid, store, compare="strategy").compare.set_index(["a", "b"])
    df = _frame(values)
    group = ["dataset", "backbone", "optimizer", "augmentation"]
    wide = df.pivot_table(index=[*group, "seed"], columns="strategy", values="value")
    both = wide[["finetune", "scratch"]].dropna()
    per_group = (both["finetune"] - both["scratch"]).groupby(level=group).mean()
    row = cmp.loc[("finetune", "scratch")]
    assert row["n_groups"] == 6 and row["n_pairs"] == 30
    assert row["mean_diff"] == pytest.approx(per_group.mean())
    assert row["p_raw"] == pytest.approx(stats.ttest_1samp(per_group, 0).pvalue)
    assert (row["wins"], row["ties"], row["losses"]) == (6, 0, 0)
    assert cmp.loc[("finetune", "linear_probe"), "losses"] == 0


def test_ranks_over_dataset_and_backbone_blocks(replicated):
    grid, store, _ = replicated
    ranks = build_report(grid, store, compare="strategy").ranks
    assert ranks is not None
    assert ranks.n_blocks == 3 and ranks.dropped_blocks == 0
    assert ranks.avg_ranks.to_dict() == {"finetune": 1.0, "linear_probe": 2.0, "scratch": 3.0}
    ref = stats.friedmanchisquare([0.901, 0.801, 0.851], [0.9, 0.8, 0.85], [0.6, 0.5, 0.55])
    assert ranks.friedman_stat == pytest.approx(ref.statistic) and ranks.friedman_p < 0.05
    assert ranks.nemenyi is not None and ranks.nemenyi.shape == (3, 3)


def test_compare_an_axis_with_one_value_exits_2_naming_the_axes_that_vary(replicated):
    grid, store, _ = replicated
    result = CliRunner().invoke(
        main,
        ["report", "--grid", str(grid), "--tracking-uri", store, "--compare", "augmentation", "--no-mlflow"],
    )
    assert result.exit_code == 2, result.output
    assert "one augmentation (none)" in result.output
    assert "dataset, strategy, optimizer" in result.output
