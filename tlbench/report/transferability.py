"""Transferability scores against the grid's own results (pandas only; the store is read by
``collect``): the scores per backbone with their intervals over seeds, the backbones in each
score's predicted order, and how well each score predicted what fine-tuning then gave.

The result a backbone is checked against is the test metric of the ``against`` strategy
(``finetune`` by default); where the grid has several configurations of it for one (dataset,
backbone) (optimizers, augmentations), the one with the best mean *validation* metric is taken,
so choosing it never looks at test.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tlbench.report.tables import SCORE, VAL_SCORE
from tlbench.stats.agreement import agreement
from tlbench.stats.intervals import summarize

SCORE_COLUMNS = ["dataset", "backbone", "seed", "score", "value"]


def score_table(scores: pd.DataFrame, ci: str = "t") -> pd.DataFrame:
    """One row per (dataset, score, backbone): n seeds, mean, interval, and the predicted rank
    (1 = predicted to transfer best) among the dataset's backbones."""
    rows = []
    for (dataset, score, backbone), g in scores.groupby(["dataset", "score", "backbone"], sort=False):
        s = summarize(g["value"].dropna().to_numpy(), ci=ci)  # type: ignore[arg-type]
        rows.append(
            {
                "dataset": dataset,
                "score": score,
                "backbone": backbone,
                "n": s.n,
                "mean": s.mean,
                "ci_low": s.ci_low,
                "ci_high": s.ci_high,
            }
        )
    out = pd.DataFrame(rows, columns=["dataset", "score", "backbone", "n", "mean", "ci_low", "ci_high"])
    if out.empty:
        return out.assign(rank=pd.Series(dtype=float))
    out["rank"] = out.groupby(["dataset", "score"])["mean"].rank(ascending=False, method="min")
    return out


def results_for(cells: pd.DataFrame, against: str) -> pd.DataFrame:
    """(dataset, backbone, seed, result): each pair's finished ``against`` results, from its
    configuration with the best mean validation metric."""
    cols = ["dataset", "backbone", "seed", "result", "config"]
    if cells.empty:
        return pd.DataFrame(columns=cols)
    mine = cells[(cells["strategy"] == against) & (cells["status"] == "FINISHED")].dropna(subset=[SCORE])
    rows = []
    for (dataset, backbone), g in mine.groupby(["dataset", "backbone"], sort=False):
        by_val = g.groupby("config")[VAL_SCORE].mean()
        config = by_val.idxmax() if by_val.notna().any() else g["config"].iloc[0]
        for _, r in g[g["config"] == config].iterrows():
            rows.append((dataset, backbone, int(r["seed"]), float(r[SCORE]), config))
    return pd.DataFrame(rows, columns=cols)


def agreement_table(scores: pd.DataFrame, results: pd.DataFrame, *, n_boot: int = 2000) -> pd.DataFrame:
    """One row per (dataset, score) with results for ≥ 2 backbones: weighted τ and Pearson r
    (with bootstrap intervals over backbones and seeds), the top-1 hit, and which backbones."""
    rows = []
    for (dataset, score), g in scores.groupby(["dataset", "score"], sort=False):
        res = results[results["dataset"] == dataset]
        pairs = _pairs(g, res)
        if pairs["backbone"].nunique() < 2:
            continue
        a = agreement(pairs, n_boot=n_boot)
        rows.append(
            {
                "dataset": dataset,
                "score": score,
                "n_backbones": a.n_backbones,
                "n_seeds": a.n_seeds,
                "weighted_tau": a.weighted_tau,
                "weighted_tau_ci": a.tau_ci,
                "pearson": a.pearson,
                "pearson_ci": a.pearson_ci,
                "top1_hit": a.top1_hit,
                "predicted_best": a.predicted_best,
                "best": a.best,
                "tied": ", ".join(a.tied),
            }
        )
    return pd.DataFrame(rows)


def _pairs(scores: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """(backbone, seed, score, result) per finished result; a score without that seed (scored
    once: its weights and data do not depend on the seed) takes the backbone's mean score."""
    s = scores.dropna(subset=["value"])
    if results.empty or s.empty:
        return pd.DataFrame(columns=["backbone", "seed", "score", "result"])
    mean = s.groupby("backbone")["value"].mean()
    by_seed = {
        (b, int(sd)): v for b, sd, v in zip(s["backbone"], s["seed"], s["value"], strict=True) if _is_seed(sd)
    }
    rows = [
        (b, int(sd), by_seed.get((b, int(sd)), mean[b]), r)
        for b, sd, r in zip(results["backbone"], results["seed"], results["result"], strict=True)
        if b in mean.index
    ]
    return pd.DataFrame(rows, columns=["backbone", "seed", "score", "result"])


def _is_seed(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def predicted_order(table: pd.DataFrame, dataset: str, score: str) -> list[str]:
    """The dataset's backbones, best predicted first by ``score`` (missing scores last)."""
    sub = table[(table["dataset"] == dataset) & (table["score"] == score)]
    return list(sub.sort_values("mean", ascending=False, na_position="last")["backbone"])


def fmt_ci(value: float, ci: tuple[float, float], digits: int = 2) -> str:
    """``0.67 [0.33, 1.00]``; ``n/a`` for a missing interval (one seed), ``—`` for no value."""
    if value is None or not np.isfinite(value):
        return "—"
    low, high = ci
    interval = f"[{low:.{digits}f}, {high:.{digits}f}]" if np.isfinite(low) and np.isfinite(high) else "[n/a]"
    return f"{value:.{digits}f} {interval}"
