"""Learning curves over replicates: a mean line with a shaded confidence band per epoch.

One seed's curve shows one trajectory; the band shows how much of a gap between two curves the
seeds alone would produce. The band is the t interval of the mean at each step, over the runs that
reached that step (a run that stopped early simply contributes no row, so ``n`` can fall along
the curve).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from tlbench.stats.frames import require_columns
from tlbench.stats.intervals import summarize_frame


def curve_band(
    history_df: pd.DataFrame,
    by: Sequence[str] = ("config",),
    step: str = "epoch",
    value: str = "val_acc",
    level: float = 0.95,
) -> pd.DataFrame:
    """Per (``by``..., ``step``): n, mean, std, ci_low, ci_high of ``value`` across replicates.

    ``history_df`` has one row per (run, step), e.g. ``config, seed, epoch, val_acc``; the CI is
    NaN where fewer than two runs have the step (draw the mean alone there).
    """
    keys = [*by, step]
    require_columns(history_df, [*keys, value], what="curve_band")
    band = summarize_frame(history_df, by=keys, value=value, ci="t", level=level)
    return band.sort_values(keys, kind="stable").reset_index(drop=True)
