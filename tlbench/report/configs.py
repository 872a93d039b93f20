"""Configurations, not cells: a configuration's replicates (cells that differ only in the seed)
summarised as n, mean, std and a confidence interval, with what their runs disagree on.

A single seed's number says little about a configuration; its replicates say how much of a gap
the seeds alone make. Pure pandas plus ``tlbench.stats`` (imported where used, so that
``import tlbench.report`` stays light for ``tlbench run``'s summary).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from tlbench.report.tables import AXES, SCORE, VAL_SCORE

# what a replicate ran with (the env.* params come from tlbench.train.fitting, the device from a
# tag): a configuration whose replicates differ here is flagged, its spread may not be the seeds'
ENV_PARAMS = ["env.torch", "env.timm", "env.tlbench", "env.threads"]
PROVENANCE = ["device", *ENV_PARAMS]
STAT_COLUMNS = ["n", "mean", "std", "ci_low", "ci_high"]
CONFIG_COLUMNS = [
    "config",
    "config_id",
    *AXES,
    "runs",
    "status",
    *STAT_COLUMNS,
    "val_mean",
    "train_time_s",
    "test_is_val",
    "provenance",
]


def validation_column(df: pd.DataFrame, value: str = SCORE) -> str:
    """The selected epoch's validation score beside ``value``: of each cell's metric (``collect``'s
    ``val_score``) beside its test score, else validation accuracy (beside test accuracy, or in a
    frame made by hand)."""
    return VAL_SCORE if value in (SCORE, VAL_SCORE) and VAL_SCORE in df.columns else "best_val_acc"


def replicate_frame(df: pd.DataFrame, value: str = "test_acc") -> pd.DataFrame:
    """The statistics' input (see ``tlbench.stats``): one row per FINISHED replicate with a value,
    ``config`` (the configuration's name), ``seed``, the axes, ``value``, and ``val`` (the
    validation score, ``validation_column``: what --agg best selects by)."""
    done = df[df["status"] == "FINISHED"]
    if "config" not in done.columns:  # a frame of cells without replicate keys: each is its own
        done = done.assign(config=done["cell"], seed=0)
    cols = ["config", "seed", *[a for a in AXES if a in done.columns]]
    out = done[cols].assign(value=pd.to_numeric(done[value], errors="coerce"))
    column = validation_column(done, value)
    val = done[column] if column in done.columns else float("nan")
    out = out.assign(val=pd.to_numeric(val, errors="coerce"))
    return out.dropna(subset=["value"]).reset_index(drop=True)


def status_text(counts: pd.Series) -> str:
    """``FINISHED 3`` or ``FINISHED 2, FAILED 1``: the states of a configuration's replicates, from
    its row of a status count table."""
    counts = counts[counts > 0].sort_values(ascending=False, kind="stable")
    return ", ".join(f"{s} {n}" for s, n in counts.items())


def _provenance_texts(done: pd.DataFrame) -> pd.Series:
    """Per configuration, what its finished replicates disagree on, e.g. ``env.torch 2.4.1 / 2.5.0``
    ("" when they agree or nothing was recorded; a value missing on some runs counts as a difference)."""
    keys = [k for k in PROVENANCE if k in done.columns]
    texts = pd.Series("", index=pd.Index(done["config"].unique(), name="config"), dtype=object)
    if not keys or done.empty:
        return texts
    missing = {"": "(not logged)", "nan": "(not logged)", "None": "(not logged)"}
    logged = done[keys].astype(str).replace(missing).assign(config=done["config"])
    differ = logged.groupby("config", sort=False)[keys].nunique() > 1
    for config in differ.index[differ.any(axis=1)]:
        runs = logged[logged["config"] == config]
        parts = [f"{k} {' / '.join(sorted(set(runs[k])))}" for k in keys if differ.at[config, k]]
        texts[config] = "; ".join(parts)
    return texts


def config_table(df: pd.DataFrame, ci: str = "t", value: str = "test_acc") -> pd.DataFrame:
    """One row per configuration in grid order: its runs' states, n finished, mean/std/CI of
    ``value``, mean validation accuracy and training time, the test = val flag, and provenance."""
    from tlbench.stats import summarize

    if df.empty:
        return pd.DataFrame(columns=CONFIG_COLUMNS)
    frame = df if "config" in df.columns else df.assign(config=df["cell"], config_id=df["id"])
    grouped = frame.groupby("config", sort=False)
    out = grouped[[c for c in ["config_id", *AXES] if c in frame.columns]].first()
    out["runs"] = grouped.size()
    counts = pd.crosstab(frame["config"], frame["status"])
    out["status"] = [status_text(counts.loc[c]) for c in out.index]
    done = frame[frame["status"] == "FINISHED"]
    values = pd.to_numeric(done[value], errors="coerce").groupby(done["config"], sort=False)
    summaries = {c: summarize(v.to_numpy(), ci=ci) for c, v in values}  # type: ignore[arg-type]
    for col in STAT_COLUMNS:
        missing = 0 if col == "n" else float("nan")
        out[col] = [getattr(summaries[c], col) if c in summaries else missing for c in out.index]
    out["val_mean"] = _means(done, validation_column(done, value)).reindex(out.index)
    out["train_time_s"] = _means(done, "train_time_s").reindex(out.index)
    out["test_is_val"] = grouped["test_is_val"].any() if "test_is_val" in frame.columns else False
    out["provenance"] = _provenance_texts(done).reindex(out.index).fillna("")
    return out.reset_index()[[c for c in CONFIG_COLUMNS if c in out.columns or c == "config"]]


def _means(done: pd.DataFrame, column: str) -> pd.Series:
    """Per configuration, the mean of a numeric column over its finished runs (NaN without any)."""
    if column not in done.columns:
        return pd.Series(dtype=float)
    return pd.to_numeric(done[column], errors="coerce").groupby(done["config"]).mean()


REPORTED = {  # a ``reported:`` key -> the run metric it is set beside
    "test_acc": "test_acc",
    "mean_per_class_acc": "test_mean_per_class_acc",
    "best_val_acc": "best_val_acc",
}
REPORTED_COLUMNS = [
    "configuration",
    "metric",
    "reported",
    "tlbench",
    "ci_low",
    "ci_high",
    "n",
    "difference",
    "check",
    "source",
    "protocol",
    "runs",
]


def reported_vs_tlbench(df: pd.DataFrame, ci: str = "t") -> pd.DataFrame:
    """Each published number beside tlbench's for the same configuration: the mean over its
    finished seeds with the 95 % interval, the difference, and whether the published number lies
    inside the interval (``inside`` / ``OUTSIDE``; ``n/a (one seed)`` without one)."""
    from tlbench.stats import summarize

    frame = df if "config" in df.columns else df.assign(config=df["cell"])
    records = []
    for config, rows in frame.groupby("config", sort=False):
        first = rows.iloc[0]
        done = rows[rows["status"] == "FINISHED"]
        for key, column in REPORTED.items():
            published = first.get(f"reported_{key}")
            if published is None or pd.isna(published):
                continue
            values = (
                pd.to_numeric(done[column], errors="coerce").dropna()
                if column in done
                else pd.Series(dtype=float)
            )
            s = summarize(values.to_numpy(), ci=ci) if len(values) else None
            mean = s.mean if s is not None else None
            records.append(
                {
                    "configuration": config,
                    "metric": column,
                    "reported": float(published),
                    "tlbench": mean,
                    "ci_low": s.ci_low if s is not None and s.n > 1 else None,
                    "ci_high": s.ci_high if s is not None and s.n > 1 else None,
                    "n": len(values),
                    "difference": mean - float(published) if mean is not None else None,
                    "check": _reported_check(float(published), s),
                    "source": first.get("reported_source") or "",
                    "protocol": first.get("reported_protocol") or "",
                    "runs": status_text(rows["status"].value_counts()),
                }
            )
    return pd.DataFrame.from_records(records, columns=REPORTED_COLUMNS)


def _reported_check(published: float, s: Any) -> str:
    if s is None:
        return "no finished run"
    if s.n < 2:
        return "n/a (one seed)"
    return "inside" if s.ci_low <= published <= s.ci_high else "OUTSIDE"
