"""How the transferability section reads, in every format: per dataset, the backbones' scores
(mean ± CI over seeds, predicted rank) beside the result they are checked against, and how each
score agreed with those results (weighted τ, Pearson r, top-1 hit).

Pandas only, on ``transferability``'s frames: the Markdown, HTML, LaTeX and terminal writers
and ``tlbench rank``'s own output lay out the same texts, so they can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tlbench.report import fmt
from tlbench.report.tables import METRIC_NAMES, Report
from tlbench.report.transferability import fmt_ci, predicted_order

SECTION_TITLE = "Transferability: scores vs the grid's results"
AGREEMENT_NOTE = (
    "Weighted τ: scipy's weighted Kendall τ of the backbones' mean score against their mean result "
    "(1 = the same order; swaps among the top backbones weigh most); Pearson r: the linear "
    "correlation of the same means. [95 % CI]: a hierarchical bootstrap over backbones and their "
    "seeds; n/a with one seed per backbone (resampling backbones alone would hide the seed noise) "
    "or where most replicates draw fewer than 3 distinct backbones (a dataset of 3 backbones), "
    "— with fewer than 3 backbones. Top-1 hit: the score's favourite is the best backbone or one "
    "its seeds cannot tell from it (paired t-test over seeds, Holm; the tied-with-best set); with "
    "one seed none can be told from it, so every backbone is tied and the hit says little."
)


@dataclass
class TransferSection:
    """One dataset's part of the section, ready to lay out."""

    dataset: str
    against: str
    note: str  # what is checked against what
    scores: pd.DataFrame  # backbones (predicted order of ``order_by``) × scores, texts
    agreement: pd.DataFrame  # one row per score, texts (empty: no results to check against yet)
    order_by: str = ""  # the score the rows are in predicted order of


def result_summary(results: pd.DataFrame, ci: str = "t") -> pd.DataFrame:
    """(dataset, backbone): the chosen configuration, n, mean and interval of its result over seeds."""
    from tlbench.stats.intervals import summarize

    cols = ["dataset", "backbone", "config", "n", "mean", "ci_low", "ci_high"]
    if results.empty or "result" not in results.columns:
        return pd.DataFrame(columns=cols)
    rows = []
    for (dataset, backbone), g in results.groupby(["dataset", "backbone"], sort=False):
        s = summarize(g["result"].to_numpy(dtype=float), ci=ci)  # type: ignore[arg-type]
        rows.append((dataset, backbone, g["config"].iloc[0], s.n, s.mean, s.ci_low, s.ci_high))
    return pd.DataFrame(rows, columns=cols)


def note(against: str, metric: str, order_by: str = "") -> str:
    """The sentences under a dataset's heading: the row order, what each score is checked against."""
    order = f"Backbones in the predicted order of {order_by}. " if order_by else ""
    return order + (
        "Each score (higher = predicted to transfer better) is shown as its mean over seeds ± the "
        "half-width of its 95 % CI (the plain value with one seed; — where it was skipped) with its "
        f"predicted rank (#1 = predicted best). It is checked against the test {metric} of the "
        f"{against} cells: per backbone, the configuration with the best mean validation {metric} "
        f"over seeds (chosen without looking at test), its test {metric} per seed."
    )


def _score_text(row: Mapping[str, Any] | None) -> str:
    if row is None or pd.isna(row["mean"]):
        return "—"
    from tlbench.stats import format_mean_ci

    return f"{format_mean_ci(row)} (#{int(row['rank'])})"


def order_score(table: pd.DataFrame, dataset: str) -> str:
    """The score the dataset's rows are ordered by: the first one ranked, unless it was skipped for
    every backbone (then the next); "" without any."""
    mine = table[table["dataset"] == dataset]
    scored = mine.dropna(subset=["mean"])
    names = list(dict.fromkeys(mine["score"]))
    return next((n for n in names if n in set(scored["score"])), names[0] if names else "")


def _order(table: pd.DataFrame, dataset: str, extra: list[str]) -> list[str]:
    """The dataset's backbones, best predicted first by its ``order_score``; the rest after them."""
    by = order_score(table, dataset)
    first = predicted_order(table, dataset, by) if by else []
    mine = list(dict.fromkeys(table.loc[table["dataset"] == dataset, "backbone"]))
    return list(dict.fromkeys([*first, *mine, *extra]))


def scores_display(
    table: pd.DataFrame, results: pd.DataFrame, dataset: str, against: str, metric: str
) -> pd.DataFrame:
    """One row per backbone: each score's text, then the result's (mean ± CI (n)) and its configuration.

    ``results`` is ``result_summary``'s (empty: no result column)."""
    mine = table[table["dataset"] == dataset]
    scores = list(dict.fromkeys(mine["score"]))
    res = results[results["dataset"] == dataset].set_index("backbone") if len(results) else None
    extra = list(res.index) if res is not None else []
    by = {(r["score"], r["backbone"]): r for r in mine.to_dict("records")}
    rows = []
    for backbone in _order(table, dataset, extra):
        row: dict[str, Any] = {"backbone": backbone}
        row |= {s: _score_text(by.get((s, backbone))) for s in scores}
        if res is not None:
            found = res.loc[backbone] if backbone in res.index else None
            text = fmt.entry(found.to_dict(), replicated=True) if found is not None else "—"
            row[f"{against}: test {metric} (mean ± 95 % CI)"] = text
            row["configuration"] = "/".join(str(found["config"]).split("/")[2:]) if found is not None else "—"
        rows.append(row)
    return pd.DataFrame(rows)


def _hit(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "—"
    return "yes" if bool(v) else "no"


def agreement_display(agreement: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One row per score: weighted τ and Pearson r with their intervals, the top-1 hit, which backbones."""
    if agreement.empty or "dataset" not in agreement.columns:
        return pd.DataFrame()
    rows = [
        {
            "score": r["score"],
            "backbones": int(r["n_backbones"]),
            "seeds": int(r["n_seeds"]),
            "weighted τ [95 % CI]": fmt_ci(r["weighted_tau"], r["weighted_tau_ci"]),
            "Pearson r [95 % CI]": fmt_ci(r["pearson"], r["pearson_ci"]),
            "top-1 hit": _hit(r["top1_hit"]),
            "predicted best": r["predicted_best"] or "—",
            "actual best": r["best"] or "—",
            "tied with best": r["tied"] or "—",
        }
        for r in agreement[agreement["dataset"] == dataset].to_dict("records")
    ]
    return pd.DataFrame(rows)


def sections(
    table: pd.DataFrame,
    agreement: pd.DataFrame,
    against: str | Mapping[str, str],
    results: pd.DataFrame | None = None,
    *,
    metric: str | Mapping[str, str] = "accuracy",
    ci: str = "t",
) -> list[TransferSection]:
    """Every dataset of ``table`` (``score_table``'s) as a section; ``against`` and ``metric`` (in
    words) are one for all datasets or given per dataset; ``results`` are ``results_for``'s."""
    summary = result_summary(results, ci) if results is not None else pd.DataFrame()
    out = []
    for dataset in dict.fromkeys(table["dataset"]) if len(table) else []:
        name = str(dataset)
        strategy = against if isinstance(against, str) else against.get(name, "finetune")
        words = metric if isinstance(metric, str) else metric.get(name, "accuracy")
        shown, by = scores_display(table, summary, name, strategy, words), order_score(table, name)
        out.append(
            TransferSection(
                name,
                strategy,
                note(strategy, words, by),
                shown,
                agreement_display(agreement, name),
                by,
            )
        )
    return out


def dataset_metrics(cells: pd.DataFrame) -> dict[str, str]:
    """dataset -> the metric its cells rank by, in words."""
    if "metric" not in cells.columns or cells.empty:
        return {}
    used = cells.groupby("dataset", sort=False)["metric"].first()
    return {str(d): METRIC_NAMES.get(m, m) for d, m in used.items()}


def report_sections(rep: Report) -> list[TransferSection]:
    """The report's transferability sections (none without rank runs), datasets in grid order."""
    if rep.transfer_scores.empty:
        return []
    order = {d: i for i, d in enumerate(dict.fromkeys(rep.cells.get("dataset", pd.Series(dtype=object))))}
    table = rep.transfer_scores.sort_values(
        "dataset", key=lambda s: s.map(lambda d: order.get(d, len(order))), kind="stable"
    )
    return sections(
        table,
        rep.transfer_agreement,
        rep.transfer_against,
        rep.transfer_results,
        metric=dataset_metrics(rep.cells),
        ci=rep.ci,
    )


def _with_against(df: pd.DataFrame, against: Mapping[str, str]) -> pd.DataFrame:
    return df.assign(against=df["dataset"].map(lambda d: against.get(str(d), "")))


def csv_tables(rep: Report) -> dict[str, pd.DataFrame]:
    """The section's files: each score per backbone (its n / mean / CI / rank), and each score's
    agreement with its intervals as columns of their own (CSV has no tuples)."""
    if rep.transfer_scores.empty:
        return {}
    out = {"transferability_scores.csv": _with_against(rep.transfer_scores, rep.transfer_against)}
    a = rep.transfer_agreement
    if not a.empty:
        spread = {
            f"{key}_ci_{side}": [c[i] for c in a[f"{key}_ci"]]
            for key in ("weighted_tau", "pearson")
            for i, side in enumerate(("low", "high"))
        }
        flat = a.drop(columns=["weighted_tau_ci", "pearson_ci"]).assign(**spread)
        out["transferability_agreement.csv"] = _with_against(flat, rep.transfer_against)
    return out


def figure_points(
    table: pd.DataFrame,
    results: pd.DataFrame,
    against: Mapping[str, str],
    metrics: Mapping[str, str],
    ci: str,
) -> pd.DataFrame:
    """One point per (dataset, score, backbone): the score's mean and CI, the result's mean and CI."""
    summary = result_summary(results, ci).drop(columns=["config", "n"])
    summary = summary.rename(columns={"mean": "result", "ci_low": "result_low", "ci_high": "result_high"})
    points = table.merge(summary, on=["dataset", "backbone"], how="left")
    points["against"] = points["dataset"].map(lambda d: against.get(str(d), "finetune"))
    points["metric"] = points["dataset"].map(lambda d: metrics.get(str(d), "accuracy"))
    return points
