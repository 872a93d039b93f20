"""Which value of an axis wins across many datasets and backbones: average ranks, Friedman, Nemenyi.

Accuracies of different datasets are not commensurable, their ranks are (Demšar 2006, "Statistical
comparisons of classifiers over multiple data sets"). Each block (a combination of ``block_by``
columns, e.g. dataset × backbone) ranks the values of the axis; the average rank summarises them.
The Friedman test asks whether any value ranks consistently differently, and the Nemenyi post-hoc
test which pairs differ; its critical difference is what the CD diagram draws. Read the Nemenyi
matrix only when Friedman rejects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from scipy import stats

from tlbench.stats.frames import require_columns

MIN_BLOCKS = 3
MIN_TREATMENTS = 3  # scipy.stats.friedmanchisquare refuses fewer than 3 groups


@dataclass(frozen=True)
class RankResult:
    """Average ranks of an axis over complete blocks, and the Friedman/Nemenyi tests when possible."""

    avg_ranks: pd.Series  # 1 = best, ascending
    n_blocks: int  # complete blocks used
    dropped_blocks: int  # blocks missing some value of the axis, left out
    friedman_stat: float  # NaN when not computed
    friedman_p: float
    nemenyi: pd.DataFrame | None  # pairwise p-values, axis values × axis values
    note: str  # what was skipped and why; "" when nothing was


def block_table(df: pd.DataFrame, axis: str, block_by: Sequence[str], value: str = "value") -> pd.DataFrame:
    """Blocks × axis values of mean ``value``: each configuration averaged over its seeds first,
    then configurations in the same cell (differing in a column outside ``block_by``) averaged."""
    block_by = list(block_by)
    require_columns(df, [axis, value, *block_by], what="rank_table")
    data = df.dropna(subset=[value]).assign(**{axis: df[axis].astype(str)})
    if "config" in data.columns:
        data = data.groupby([*block_by, axis, "config"], sort=False)[value].mean().reset_index()
    return data.groupby([*block_by, axis], sort=True)[value].mean().unstack(axis)


def _notes(n_blocks: int, dropped: int, k: int, axis: str) -> list[str]:
    notes = []
    if dropped:
        notes.append(f"{dropped} incomplete block(s) (not every {axis} present) dropped")
    if k < MIN_TREATMENTS:
        notes.append(
            f"Friedman/Nemenyi skipped: {k} value(s) of {axis!r}; scipy's Friedman test needs >= "
            f"{MIN_TREATMENTS} (with 2, compare them with stats.pairwise instead)"
        )
    elif n_blocks < MIN_BLOCKS:
        notes.append(f"Friedman/Nemenyi skipped: {n_blocks} complete block(s), needs >= {MIN_BLOCKS}")
    return notes


def rank_table(
    df: pd.DataFrame,
    axis: str = "strategy",
    block_by: Sequence[str] = ("dataset", "backbone"),
    value: str = "value",
    *,
    higher_is_better: bool = True,
) -> RankResult:
    """Average rank of each value of ``axis`` over the complete blocks of ``block_by``.

    Ranks use ``scipy.stats.rankdata`` (ties averaged; 1 = best). With >= 3 complete blocks and
    >= 3 axis values: ``scipy.stats.friedmanchisquare`` and ``scikit_posthocs.posthoc_nemenyi_friedman``.
    """
    table = block_table(df, axis, block_by, value)
    complete = table.dropna()
    dropped, n_blocks, k = len(table) - len(complete), len(complete), table.shape[1]
    notes = _notes(n_blocks, dropped, k, axis)
    if n_blocks == 0:
        note = f"no complete block: no {list(block_by)} combination has every value of {axis!r}"
        empty = pd.Series(dtype=float, name="avg_rank")
        return RankResult(empty, 0, dropped, float("nan"), float("nan"), None, "; ".join([note, *notes]))
    scores = -complete.to_numpy() if higher_is_better else complete.to_numpy()
    ranks = pd.DataFrame(stats.rankdata(scores, axis=1), index=complete.index, columns=complete.columns)
    avg = ranks.mean(axis=0).sort_values(kind="stable").rename("avg_rank")
    stat = p = float("nan")
    nemenyi = None
    if k >= MIN_TREATMENTS and n_blocks >= MIN_BLOCKS:
        import scikit_posthocs as sp  # imports pyplot and seaborn: only when the test runs

        res = stats.friedmanchisquare(*(complete[c].to_numpy() for c in complete.columns))
        stat, p = float(res.statistic), float(res.pvalue)
        nemenyi = sp.posthoc_nemenyi_friedman(complete.reset_index(drop=True))
        nemenyi.index.name = nemenyi.columns.name = axis
    return RankResult(avg, n_blocks, dropped, stat, p, nemenyi, "; ".join(notes))
