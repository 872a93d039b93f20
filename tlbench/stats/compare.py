"""Is configuration A better than B, or only luckier with its seeds?

Two sets of replicates are compared with a **paired t-test** over the seeds both have (the same
seed fixes the data order and head initialisation, so pairing removes that shared noise) when they
share at least two, else with **Welch's t-test** (unequal variances) when each has at least two;
otherwise there is no test and p is NaN. Several tests at once (a row of a pivot, every pair of an
axis) are **Holm-corrected** (``multipletests(method="holm")``'s formula), which controls the
family-wise error without Bonferroni's loss of power. Across groups (an axis compared over
datasets × backbones × ...), the test is over the groups' mean differences, not the pooled seeds.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from tlbench.stats.errors import StatsError
from tlbench.stats.frames import other_axes, require_columns

NAN = float("nan")


@dataclass(frozen=True)
class TestResult:
    """One two-sample comparison; ``mean_diff`` is a − b (paired: the mean of the differences)."""

    __test__ = False  # a library class, not a pytest test class

    test: str  # "paired t", "Welch t", or "none" (too few replicates to test)
    statistic: float
    p: float
    n_a: int
    n_b: int
    n_pairs: int  # observations present in both (shared seeds)
    mean_diff: float
    diff_ci_low: float
    diff_ci_high: float


def _clean(s: pd.Series, name: str) -> pd.Series:
    s = pd.to_numeric(s, errors="coerce").astype(float).dropna()
    if not s.index.is_unique:
        dup = list(s.index[s.index.duplicated()].unique()[:5])
        raise StatsError(f"{name} has more than one value for the seed(s) {dup}: average them first")
    return s


def paired_or_welch(a: pd.Series, b: pd.Series, *, level: float = 0.95) -> TestResult:
    """Compare two sets of replicates indexed by seed (or by any matching key such as (group, seed)).

    Paired t (``scipy.stats.ttest_rel``) over the shared index when there are >= 2 shared entries,
    else Welch t (``ttest_ind(equal_var=False)``) when each side has >= 2, else no test. The CI of
    the difference comes from the same test: the t interval of the paired differences, or the
    Welch-Satterthwaite interval for unpaired samples.
    """
    a, b = _clean(a, "a"), _clean(b, "b")
    with _quiet():
        return _paired_or_welch(a, b, level)


@contextmanager
def _quiet() -> Iterator[None]:
    """scipy warns of precision loss when the differences are (nearly) constant: its p is still
    right (0, or NaN for identical values), and a report would print the warning once per test."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        yield


def _paired_or_welch(a: pd.Series, b: pd.Series, level: float) -> TestResult:
    shared = a.index.intersection(b.index)
    n_a, n_b, n_pairs = len(a), len(b), len(shared)
    if n_pairs >= 2:
        name, res = "paired t", stats.ttest_rel(a.loc[shared].to_numpy(), b.loc[shared].to_numpy())
        diff = float((a.loc[shared] - b.loc[shared]).mean())
    elif n_a >= 2 and n_b >= 2:
        name, res = "Welch t", stats.ttest_ind(a.to_numpy(), b.to_numpy(), equal_var=False)
        diff = float(a.mean() - b.mean())
    else:
        diff = float(a.mean() - b.mean()) if n_a and n_b else NAN
        return TestResult("none", NAN, NAN, n_a, n_b, n_pairs, diff, NAN, NAN)
    ci = res.confidence_interval(confidence_level=level)
    return TestResult(
        name, float(res.statistic), float(res.pvalue), n_a, n_b, n_pairs, diff, float(ci.low), float(ci.high)
    )


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values over the finite entries; NaN (untested) entries stay NaN.

    The step-down formula of ``multipletests(method="holm")`` (the tests check they agree), done
    here because statsmodels' Holm branch calls ``gc.collect()`` on every call: 0.2 s each in a
    process holding a large store's runs, seconds for a report that tests every pivot row.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        x = p[ok]
        order = np.argsort(x, kind="stable")
        m = len(x)
        stepped = np.maximum.accumulate(x[order] * np.arange(m, 0, -1))
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(stepped, 1.0)
        out[ok] = adjusted
    return out


def _by_seed(df: pd.DataFrame, value: str) -> dict[str, pd.Series]:
    """Each configuration's replicate values indexed by seed (duplicate seeds averaged)."""
    return {
        str(config): g.groupby("seed")[value].mean()
        for config, g in df.dropna(subset=[value]).groupby("config", sort=True)
    }


def ties_with_best(
    df_row_group: pd.DataFrame, value: str = "value", higher_is_better: bool = True, alpha: float = 0.05
) -> pd.DataFrame:
    """Which configurations of one pivot row are the best, and which cannot be told apart from it.

    The best is the highest mean (lowest when ``higher_is_better`` is False). Each other
    configuration is tested against it (paired over shared seeds, Welch otherwise) and the p-values
    are Holm-corrected across the row. ``tie`` is True for a non-best configuration whose adjusted
    p >= ``alpha``, or that could not be tested (``tested`` False: fewer than 2 replicates, or
    replicates identical to the best's). One row per configuration, best first.
    """
    require_columns(df_row_group, ["config", "seed", value], what="ties_with_best")
    series = _by_seed(df_row_group, value)
    if not series:
        raise StatsError("ties_with_best got no replicate with a value: nothing to rank")
    means = pd.Series({c: s.mean() for c, s in series.items()})
    best = means.idxmax() if higher_is_better else means.idxmin()
    rows = []
    for config, s in series.items():
        r = paired_or_welch(s, series[best]) if config != best else None
        rows.append(
            {
                "config": config,
                "mean": float(s.mean()),
                "n": len(s),
                "p_raw": r.p if r else NAN,
                "test": r.test if r else "",
            }
        )
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(out["p_raw"])
    out["best"] = out["config"] == best
    out["tested"] = np.isfinite(out["p_raw"])
    out["tie"] = ~out["best"] & (~out["tested"] | (out["p_holm"] >= alpha))
    out = out.sort_values("mean", ascending=not higher_is_better, kind="stable")
    out = out.sort_values("best", ascending=False, kind="stable").reset_index(drop=True)
    return out[["config", "mean", "n", "p_raw", "p_holm", "best", "tie", "tested", "test"]]


def _observations(df: pd.DataFrame, axis: str, group_by: list[str], value: str) -> pd.DataFrame:
    """Rows (group..., seed), one column per value of ``axis``: the matched observations.

    Replicates that share the group, the axis value and the seed (configurations differing only in
    a column outside ``group_by``) are averaged into one observation.
    """
    obs = df.dropna(subset=[value]).groupby([*group_by, "seed", axis], sort=True)[value].mean()
    return obs.unstack(axis)


def _per_group_outcome(a: pd.Series, b: pd.Series, alpha: float, higher_is_better: bool) -> str:
    """``win``/``loss`` for a when the group's test is significant, else ``tie`` (untestable too)."""
    r = paired_or_welch(a, b)
    if not (np.isfinite(r.p) and r.p < alpha):
        return "tie"
    a_better = (a.mean() > b.mean()) == higher_is_better
    return "win" if a_better else "loss"


def _group_differences(sub: pd.DataFrame, a: str, b: str, group_by: list[str]) -> pd.Series:
    """Per group, a − b: the mean of the seed-matched differences, or the difference of the means
    where no seed matches. One number per group: the unit a grid's conclusion generalises over."""
    out = {}
    for key, g in sub.groupby(level=group_by):
        pairs = g[[a, b]].dropna()
        out[key] = float((pairs[a] - pairs[b]).mean()) if len(pairs) else float(g[a].mean() - g[b].mean())
    return pd.Series(out, dtype=float)


def _compare_pair(
    wide: pd.DataFrame,
    a: str,
    b: str,
    group_by: list[str],
    alpha: float,
    higher_is_better: bool,
    level: float,
) -> dict[str, object]:
    """One row of ``pairwise``: the test over the groups both values have, and the per-group tally.

    With two groups or more, the test is a one-sample t-test of the per-group differences (``paired
    t over groups``): seeds of one group share its dataset and backbone, so pooling their pairs
    would count one group's luck as several independent findings. With one group, the seeds are the
    replicates (``paired_or_welch``)."""
    present = wide[[a, b]].notna().groupby(level=group_by).any()
    common = present.index[present[a] & present[b]]
    sub = wide[wide.index.droplevel("seed").isin(common)] if len(common) else wide.iloc[:0]
    n_pairs = int(sub[[a, b]].dropna().shape[0])
    if len(common) >= 2:
        diffs = _group_differences(sub, a, b, group_by)
        with _quiet():
            res = stats.ttest_1samp(diffs.to_numpy(), 0.0)
        ci = res.confidence_interval(confidence_level=level)
        test, p, diff, low, high = (
            "paired t over groups",
            float(res.pvalue),
            float(diffs.mean()),
            ci.low,
            ci.high,
        )
    else:
        r = paired_or_welch(sub[a], sub[b], level=level)
        test, p, diff, low, high = r.test, r.p, r.mean_diff, r.diff_ci_low, r.diff_ci_high
    tally = {"win": 0, "tie": 0, "loss": 0}
    for _, g in sub.groupby(level=group_by):
        sa, sb = g[a].droplevel(group_by), g[b].droplevel(group_by)
        tally[_per_group_outcome(sa, sb, alpha, higher_is_better)] += 1
    return {
        "a": a,
        "b": b,
        "n_groups": len(common),
        "n_pairs": n_pairs,
        "mean_diff": diff,
        "ci_low": float(low),
        "ci_high": float(high),
        "test": test,
        "p_raw": p,
        "wins": tally["win"],
        "ties": tally["tie"],
        "losses": tally["loss"],
    }


def pairwise(
    df: pd.DataFrame,
    axis: str = "strategy",
    group_by: Sequence[str] | None = None,
    value: str = "value",
    *,
    alpha: float = 0.05,
    higher_is_better: bool = True,
    level: float = 0.95,
) -> pd.DataFrame:
    """Every pair of values of ``axis`` compared over the groups where both were run.

    ``group_by`` (default: the other axis columns present) defines the groups, e.g. (dataset,
    backbone, optimizer, augmentation). Per pair: the mean difference a − b and its ``level`` CI
    from a t-test over the per-group differences (over the seeds when there is one group: paired,
    Welch when none match), Holm-adjusted across all pairs, and wins/ties/losses of a over b counted
    per group by the group's own test over its seeds (a tie when not significant at ``alpha`` or
    untestable).
    """
    group_by = other_axes(df, axis) if group_by is None else list(group_by)
    require_columns(df, [axis, "seed", value, *group_by], what="pairwise")
    levels = sorted(df[axis].dropna().astype(str).unique())
    if len(levels) < 2:
        raise StatsError(
            f"pairwise needs at least 2 values of {axis!r} to compare; the frame has {len(levels)}: {levels}"
        )
    frame = df.assign(**{axis: df[axis].astype(str)})
    if not group_by:  # one group: the whole frame
        frame, group_by = frame.assign(_all="all"), ["_all"]
    wide = _observations(frame, axis, group_by, value)
    rows = [
        _compare_pair(wide, a, b, group_by, alpha, higher_is_better, level)
        for a, b in combinations(levels, 2)
    ]
    out = pd.DataFrame(rows)
    out.insert(out.columns.get_loc("p_raw") + 1, "p_holm", holm(out["p_raw"]))
    return out
