"""Average ranks by hand, Friedman and Nemenyi as scipy/scikit-posthocs compute them, the CD diagram."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy import stats

from tlbench.figures.cd_diagram import cd_diagram
from tlbench.stats import RankResult, block_table, rank_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# blocks (dataset, backbone) -> mean accuracy per strategy; 'ft' and 'lp_ft' tie on (pets, vit)
TABLE = {
    ("digits", "resnet18"): {"ft": 0.95, "lp": 0.90, "lp_ft": 0.96},
    ("digits", "vit"): {"ft": 0.97, "lp": 0.93, "lp_ft": 0.96},
    ("pets", "resnet18"): {"ft": 0.80, "lp": 0.78, "lp_ft": 0.85},
    ("pets", "vit"): {"ft": 0.88, "lp": 0.86, "lp_ft": 0.88},
    ("flowers", "resnet18"): {"ft": 0.70, "lp": 0.72, "lp_ft": 0.75},
}
# ranks (1 = best):     ft   lp   lp_ft
#   digits/resnet18      2    3    1
#   digits/vit           1    3    2
#   pets/resnet18        2    3    1
#   pets/vit           1.5    3  1.5
#   flowers/resnet18     3    2    1
# average             1.9  2.8  1.3
HAND_RANKS = {"lp_ft": 1.3, "ft": 1.9, "lp": 2.8}


def replicate_frame(table: dict = TABLE, seeds: int = 3) -> pd.DataFrame:
    """Replicate rows whose per-config mean is exactly the table's value (offsets sum to zero)."""
    offsets = np.linspace(-0.01, 0.01, seeds)
    rows = []
    for (dataset, backbone), cells in table.items():
        for strategy, mean in cells.items():
            for seed, off in enumerate(offsets):
                config = f"{dataset}/{backbone}/{strategy}"
                rows.append((config, seed, dataset, backbone, strategy, mean + off))
    return pd.DataFrame(rows, columns=["config", "seed", "dataset", "backbone", "strategy", "value"])


def test_block_table_averages_the_seeds():
    table = block_table(replicate_frame(), axis="strategy", block_by=["dataset", "backbone"])
    assert table.loc[("pets", "vit"), "lp"] == pytest.approx(0.86)
    assert table.shape == (5, 3)


def test_average_ranks_by_hand():
    r = rank_table(replicate_frame())
    assert list(r.avg_ranks.index) == ["lp_ft", "ft", "lp"]
    assert r.avg_ranks.to_dict() == pytest.approx(HAND_RANKS)
    assert (r.n_blocks, r.dropped_blocks, r.note) == (5, 0, "")


def test_lower_is_better_reverses_the_ranks():
    r = rank_table(replicate_frame(), higher_is_better=False)
    assert r.avg_ranks.to_dict() == pytest.approx({k: 4 - v for k, v in HAND_RANKS.items()})


def test_friedman_and_nemenyi_equal_the_library_calls():
    r = rank_table(replicate_frame())
    wide = pd.DataFrame.from_dict(TABLE, orient="index")
    ref = stats.friedmanchisquare(wide["ft"], wide["lp"], wide["lp_ft"])
    assert (r.friedman_stat, r.friedman_p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    nemenyi = sp.posthoc_nemenyi_friedman(wide.reset_index(drop=True))
    assert r.nemenyi is not None
    pd.testing.assert_frame_equal(
        r.nemenyi.loc[["ft", "lp", "lp_ft"], ["ft", "lp", "lp_ft"]],
        nemenyi.loc[["ft", "lp", "lp_ft"], ["ft", "lp", "lp_ft"]],
        check_names=False,
    )


def test_incomplete_blocks_are_dropped_and_counted():
    df = replicate_frame()
    extra = replicate_frame({("cars", "resnet18"): {"ft": 0.5, "lp": 0.4}})  # no lp_ft
    r = rank_table(pd.concat([df, extra]))
    assert (r.n_blocks, r.dropped_blocks) == (5, 1)
    assert "1 incomplete block" in r.note
    full = rank_table(df)
    assert r.friedman_p == pytest.approx(full.friedman_p)
    assert r.avg_ranks.to_dict() == pytest.approx(HAND_RANKS)


def test_a_missing_replicate_keeps_the_block():
    df = replicate_frame().drop(index=0)  # digits/resnet18/ft lost a seed
    assert rank_table(df).n_blocks == 5


def test_two_values_skip_friedman_and_say_why():
    df = replicate_frame().query("strategy != 'lp'")
    r = rank_table(df)
    assert r.nemenyi is None and math.isnan(r.friedman_p)
    assert "needs >= 3" in r.note and "2 value(s) of 'strategy'" in r.note
    assert r.avg_ranks.to_dict() == pytest.approx({"lp_ft": 1.3, "ft": 1.7})


def test_too_few_blocks_skip_friedman():
    df = replicate_frame().query("dataset == 'digits'")
    r = rank_table(df)
    assert r.n_blocks == 2 and r.nemenyi is None
    assert "2 complete block(s), needs >= 3" in r.note


def test_no_complete_block_gives_an_empty_result():
    df = replicate_frame({("cars", "vit"): {"ft": 0.5}, ("pets", "vit"): {"lp": 0.4}})
    r = rank_table(df)
    assert r.avg_ranks.empty and r.n_blocks == 0 and r.dropped_blocks == 2
    assert "no complete block" in r.note


def test_cd_diagram_writes_a_png(tmp_path):
    r = rank_table(replicate_frame())
    path = cd_diagram(r, tmp_path / "figs" / "cd.png")
    assert path == tmp_path / "figs" / "cd.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_cd_diagram_without_nemenyi_returns_none(tmp_path):
    r = RankResult(pd.Series({"a": 1.0, "b": 2.0}), 4, 0, float("nan"), float("nan"), None, "skipped")
    assert cd_diagram(r, tmp_path / "cd.png") is None
    assert not (tmp_path / "cd.png").exists()
