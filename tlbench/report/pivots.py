"""Pivots whose entries are conclusions: a mean with its CI over seeds, the best of each row, and
the entries the seeds cannot tell from it.

Rows × columns fix a position; the axes in neither are collapsed, in one of two ways (``agg``):

- ``mean``: the mean over the position's configurations. Each seed's value is the mean over the
  configurations run with that seed, so the interval is over seeds (n = seeds) and the tie test
  pairs seeds; the range of the configuration means is kept as the spread (``lo``/``hi``).
- ``best``: the configuration with the highest mean *validation* accuracy, with its own seeds;
  ``winner`` names it. Selecting on test accuracy would report the luckiest of noisy numbers.

In each row, ``stats.ties_with_best`` tests every entry against the best (paired t over shared
seeds, Welch otherwise, Holm across the row); ``tie`` marks the ones not significantly different.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from tlbench.report.configs import replicate_frame
from tlbench.report.tables import AXES, ReportError, check_axes, order

AGGS = ("mean", "best")
SELECT_ON = "val"  # what --agg best chooses by: the validation score (replicate_frame), never test
STATS = ["n", "mean", "std", "ci_low", "ci_high"]


@dataclass
class PivotTable:
    """One value arranged by axes; ``long`` has a row per position with its statistics and marks."""

    value: str
    rows: list[str]
    cols: list[str]
    agg: str
    ci: str
    collapsed: list[str]
    long: pd.DataFrame
    index: pd.Index
    columns: pd.Index

    def wide(self, name: str) -> pd.DataFrame:
        """Rows × columns of one field of ``long`` (e.g. ``mean``, ``n``, ``best``) in grid order."""
        if self.long.empty or name not in self.long.columns:
            w = pd.DataFrame(index=self.index, columns=self.columns, dtype=float)
        else:
            w = self.long.set_index(self.rows + self.cols)[name].unstack(self.cols)
            w = w.reindex(index=self.index, columns=self.columns)
        if name in ("best", "tie", "flagged"):
            return w.eq(True)
        return w.fillna("") if name == "winner" else w

    @property
    def replicated(self) -> bool:
        """Whether any entry has an interval: a seedless grid's tables keep their plain look."""
        return bool((self.long["n"] > 1).any()) if len(self.long) else False

    def tests(self) -> list[str]:
        """The tests the tie marks rest on (``paired t``, ``Welch t``), for the table's note."""
        return sorted(set(self.long["test"]) - {"", "none"}) if len(self.long) else []


def pivot_table(
    df: pd.DataFrame,
    rows: list[str],
    cols: list[str],
    value: str = "test_acc",
    *,
    agg: str = "mean",
    ci: str = "t",
    flagged: frozenset[str] = frozenset(),
) -> PivotTable:
    """``value`` of ``df`` (one row per cell, ``collect.cells_frame``) by ``rows`` × ``cols``;
    ``flagged`` names configurations whose entries get a provenance mark."""
    check_axes(df, rows + cols)
    if agg not in AGGS:
        raise ReportError(f"--agg {agg!r}: choose from {', '.join(AGGS)}")
    keys = rows + cols
    collapsed = [a for a in AXES if a in df.columns and a not in keys and df[a].nunique() > 1]
    runs = replicate_frame(df, value)
    if agg == "mean":
        obs, extra = _by_mean(runs, keys, flagged)
    else:
        obs, extra = _by_best(runs, keys, collapsed, flagged)
    long = _summaries(obs, keys, ci)
    if len(long):
        long = long.merge(extra, on=keys, how="left")
        planned = df.groupby(keys, sort=False).size().rename("planned").reset_index()
        long = _mark_rows(long.merge(planned, on=keys, how="left"), obs, rows, cols)
    return PivotTable(value, rows, cols, agg, ci, collapsed, long, order(df, rows), order(df, cols))


def _by_mean(
    runs: pd.DataFrame, keys: list[str], flagged: frozenset[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (position, seed): the mean over the configurations; per position: count and spread."""
    obs = runs.groupby([*keys, "seed"], sort=False)["value"].mean().reset_index()
    per_config = runs.groupby([*keys, "config"], sort=False)["value"].mean().reset_index()
    extra = per_config.groupby(keys, sort=False).agg(
        k=("config", "nunique"), lo=("value", "min"), hi=("value", "max")
    )
    grouped = runs.groupby(keys, sort=False)
    extra["runs"] = grouped.size()
    extra["flagged"] = grouped["config"].agg(lambda c: bool(set(c) & flagged))
    extra["winner"] = ""
    return obs, extra.reset_index()


def _by_best(
    runs: pd.DataFrame, keys: list[str], collapsed: list[str], flagged: frozenset[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per position the configuration with the best mean validation accuracy, and its seeds."""
    per_config = runs.groupby([*keys, "config"], sort=False).agg(
        select=(SELECT_ON, "mean"), **{a: (a, "first") for a in collapsed}
    )
    per_config = per_config.reset_index()
    k = per_config.groupby(keys, sort=False).size().rename("k")
    ranked = per_config.dropna(subset=["select"]).sort_values("select", ascending=False, kind="stable")
    winners = ranked.drop_duplicates(keys)
    chosen = runs[runs["config"].isin(set(winners["config"]))]
    obs = chosen.groupby([*keys, "seed"], sort=False)["value"].mean().reset_index()
    extra = winners[[*keys, "config"]].assign(
        winner=winners[collapsed].astype(str).agg("/".join, axis=1) if collapsed else "",
        flagged=winners["config"].isin(flagged),
        lo=float("nan"),
        hi=float("nan"),
    )
    extra = extra.merge(k.reset_index(), on=keys, how="left")
    extra = extra.merge(chosen.groupby("config").size().rename("runs").reset_index(), on="config")
    return obs, extra.drop(columns="config")


def _summaries(obs: pd.DataFrame, keys: list[str], ci: str) -> pd.DataFrame:
    """n, mean, std and CI over the seeds of each position."""
    from tlbench.stats import summarize

    records = []
    for key, g in obs.groupby(keys, sort=False):
        s = summarize(g["value"], ci=ci)  # type: ignore[arg-type]
        records.append({**dict(zip(keys, key, strict=True)), **{c: getattr(s, c) for c in STATS}})
    return pd.DataFrame(records, columns=[*keys, *STATS])


def _mark_rows(long: pd.DataFrame, obs: pd.DataFrame, rows: list[str], cols: list[str]) -> pd.DataFrame:
    """``best`` (the row's highest mean; exact ties all best), ``tie`` (tested, and not
    significantly different from the best), with the test and its Holm-adjusted p."""
    from tlbench.stats import ties_with_best

    long = long.assign(best=False, tie=False, p_holm=float("nan"), test="")
    position = long[cols].astype(str).agg("\x1f".join, axis=1)
    obs = obs.assign(config=obs[cols].astype(str).agg("\x1f".join, axis=1))
    by_row = dict(list(obs.groupby(rows, sort=False)))
    for key, sub in long.groupby(rows, sort=False):  # keys are tuples, as in by_row
        idx = sub.index
        means = sub["mean"]
        best = means.eq(means.max()) & means.notna()
        res = ties_with_best(by_row[key][["config", "seed", "value"]]).set_index("config")
        pos = position.loc[idx]
        long.loc[idx, "best"] = best
        long.loc[idx, "p_holm"] = pos.map(res["p_holm"]).to_numpy()
        long.loc[idx, "test"] = pos.map(res["test"]).fillna("").to_numpy()
        tie = pos.map(res["tie"] & res["tested"]).eq(True).to_numpy() & ~best.to_numpy()
        long.loc[idx, "tie"] = tie
    return long


def plain(piv: pd.DataFrame, value: str = "test_acc") -> PivotTable:
    """A numeric pivot (one number per position, e.g. a report made by hand) as a ``PivotTable``
    with n = 1 everywhere: no intervals, the best per row marked, no tests."""
    rows = [n or "row" for n in piv.index.names]
    cols = [n or "column" for n in piv.columns.names]
    records = []
    for r in piv.index:
        for c in piv.columns:
            v = piv.at[r, c]
            if pd.isna(v):
                continue
            keys = [*(r if isinstance(r, tuple) else (r,)), *(c if isinstance(c, tuple) else (c,))]
            records.append({**dict(zip(rows + cols, keys, strict=True)), "n": 1, "mean": float(v)})
    long = pd.DataFrame(records, columns=[*rows, *cols, "n", "mean"])
    long = long.assign(std=float("nan"), ci_low=float("nan"), ci_high=float("nan"), k=1, runs=1, planned=1)
    long = long.assign(lo=float("nan"), hi=float("nan"), winner="", flagged=False, tie=False, test="")
    best = long.groupby(rows, sort=False)["mean"].transform("max").eq(long["mean"])
    long = long.assign(best=best, p_holm=float("nan"))
    return PivotTable(value, rows, cols, "mean", "t", [], long, piv.index, piv.columns)
