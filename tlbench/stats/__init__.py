"""Statistics over replicate runs: conclusions, not single numbers.

Input convention
----------------
Every function takes a long ``pandas.DataFrame`` with **one row per replicate run**:

- ``config`` (str): the configuration id; runs that differ only in the seed share it;
- ``seed`` (int): the replicate;
- ``value`` (float): the metric, e.g. test accuracy (another column can be named with ``value=``);
- any axis columns (``dataset``, ``backbone``, ``strategy``, ``optimizer``, ``augmentation``;
  strings), constant within a configuration.

A missing or failed replicate is simply an absent row (a NaN value is treated the same way): a
configuration with 2 of its 3 seeds is summarised and compared over those 2.

Which statistic is used when
----------------------------
- **Intervals** (``intervals``): the Student t interval of the mean by default, ``scipy.stats.t``;
  the percentile bootstrap (``ci="bootstrap"``) on request. It under-covers at small n (about 83-85 %
  instead of 95 % at n = 5, measured in tests/stats), so prefer t unless there are many
  replicates. n < 2 gives no interval (NaN) and is formatted as the plain number.
- **Two configurations** (``compare.paired_or_welch``): a paired t-test over the seeds both have
  when they share >= 2 (``scipy.stats.ttest_rel``), else Welch's t-test (``ttest_ind(equal_var=False)``)
  when each has >= 2, else no test (p = NaN).
- **Many at once**: Holm's correction (``statsmodels ... multipletests(method="holm")``) across one
  pivot row (``ties_with_best``) and across all pairs of an axis (``pairwise``).
- **Across datasets/backbones** (``ranks``): average ranks per block, the Friedman test
  (``scipy.stats.friedmanchisquare``, needs >= 3 complete blocks and >= 3 values of the axis) and
  the Nemenyi post-hoc test (``scikit_posthocs.posthoc_nemenyi_friedman``), drawn as a
  critical-difference diagram.
- **Learning curves** (``curves``): the t interval at every epoch, for a mean line and a band.

All functions are pure (frames in, frames/dataclasses out); the CD diagram is drawn by ``tlbench.figures.cd_diagram``.
"""

from __future__ import annotations

from tlbench.stats.compare import TestResult, holm, paired_or_welch, pairwise, ties_with_best
from tlbench.stats.curves import curve_band
from tlbench.stats.errors import StatsError
from tlbench.stats.frames import AXES
from tlbench.stats.intervals import Summary, format_mean_ci, summarize, summarize_frame
from tlbench.stats.race_rule import Drop, race_decisions
from tlbench.stats.ranks import RankResult, block_table, rank_table

__all__ = [
    "Drop",
    "race_decisions",
    "AXES",
    "RankResult",
    "StatsError",
    "Summary",
    "TestResult",
    "block_table",
    "curve_band",
    "format_mean_ci",
    "holm",
    "paired_or_welch",
    "pairwise",
    "rank_table",
    "summarize",
    "summarize_frame",
    "ties_with_best",
]
