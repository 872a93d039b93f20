"""How well did a transferability score predict the fine-tuned results of a grid's backbones?

The rank agreement is the **weighted Kendall τ** of the backbones' mean score against their mean
fine-tuned result, ``scipy.stats.weightedtau`` with its defaults (hyperbolic weigher, ``rank=True``):
the statistic thuml's Transfer-Learning-Library reports for LogME, LEEP, NCE and H-Score
(``examples/model_selection``, "Weighted Tau" next to "Pearson Corr"), and the one Agostinelli et
al., "How stable are Transferability Metrics evaluations?" (ECCV 2022) recommend, since it weighs
swaps among the top backbones, the ones a user would pick, above swaps at the bottom. Pearson's r
of the same means is reported alongside, as both sources do.

Each comes with a **hierarchical percentile bootstrap** interval "over backbones and seeds": a
replicate draws the backbones with replacement, then each drawn backbone's seed rows with
replacement (a row's score and result stay paired, they share the seed's data draw). Fewer than
three backbones give no τ or r (NaN), and one seed per backbone gives no interval: resampling
backbones alone would ignore the seed noise the interval is meant to show, so it would be a fake.

The **top-1 hit** asks whether the score's favourite is among the backbones the fine-tuning runs
cannot tell from the best (``tlbench.stats.compare.ties_with_best``: paired t over seeds, Holm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from tlbench.stats.compare import ties_with_best
from tlbench.stats.errors import StatsError
from tlbench.stats.frames import require_columns

NAN = float("nan")
NO_CI: tuple[float, float] = (NAN, NAN)
MIN_BACKBONES = 3
"""τ and r of two points are ±1 whatever the data (or undefined): no evidence of agreement."""

COLUMNS = ("backbone", "seed", "score", "result")


@dataclass(frozen=True)
class Agreement:
    """A score's agreement with the fine-tuned results over one dataset's backbones."""

    n_backbones: int  # backbones with at least one complete (score and result) row
    n_seeds: int  # the most seeds any backbone has, counting complete rows
    weighted_tau: float  # scipy.stats.weightedtau(mean score, mean result); NaN with < 3 backbones
    tau_ci: tuple[float, float]  # hierarchical percentile bootstrap; (nan, nan) with one seed ("n/a")
    pearson: float  # scipy.stats.pearsonr of the means; NaN with < 3 backbones or a constant side
    pearson_ci: tuple[float, float]
    top1_hit: bool | None  # predicted_best in tied; None when there are no results
    predicted_best: str  # highest mean score ("" when no backbone has a score)
    best: str  # highest mean result ("" when no results)
    tied: tuple[str, ...]  # best first, then those ties_with_best cannot tell from it


@dataclass(frozen=True)
class _Table:
    """Backbones × seed rows as padded arrays (NaN past a backbone's count): what resampling indexes."""

    names: tuple[str, ...]
    score: np.ndarray  # (B, K)
    result: np.ndarray  # (B, K)
    counts: np.ndarray  # (B,) complete rows per backbone, >= 1

    @classmethod
    def from_frame(cls, clean: pd.DataFrame) -> _Table:
        names = tuple(sorted(clean["backbone"].unique()))
        groups = clean.groupby("backbone", sort=True)
        counts = groups.size().reindex(list(names)).to_numpy()
        k = int(counts.max())
        score, result = np.full((len(names), k), NAN), np.full((len(names), k), NAN)
        for i, name in enumerate(names):
            g = groups.get_group(name).sort_values("seed")
            score[i, : len(g)], result[i, : len(g)] = g["score"].to_numpy(), g["result"].to_numpy()
        return cls(names, score, result, counts)


def _exact_mean(values: np.ndarray, mask: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Means over the last axis (masked), computed as first + mean(x − first).

    A seed-independent score is repeated on every row, and ``sum / n`` of n copies of 0.1 is not
    0.1: two backbones with the same score but different seed counts would then no longer tie, and
    τ would rank a rounding error. Offsetting by the first value keeps a constant row exact.
    """
    first = values[..., :1]
    deviation = np.where(mask, values - first, 0.0).sum(axis=-1) / counts
    return first[..., 0] + deviation


def _means(table: _Table) -> tuple[np.ndarray, np.ndarray]:
    mask = np.arange(table.score.shape[1]) < table.counts[:, None]
    return _exact_mean(table.score, mask, table.counts), _exact_mean(table.result, mask, table.counts)


def _weighted_tau(x: np.ndarray, y: np.ndarray) -> float:
    """scipy's weighted τ with its defaults; NaN below three backbones."""
    if len(x) < MIN_BACKBONES:
        return NAN
    return float(stats.weightedtau(x, y).statistic)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """scipy's Pearson r; NaN below three backbones or when a side is constant (no warning)."""
    if len(x) < MIN_BACKBONES or np.ptp(x) == 0 or np.ptp(y) == 0:
        return NAN
    return float(stats.pearsonr(x, y).statistic)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of every row pair at once (the bootstrap's); NaN where a row is constant."""
    xc, yc = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((xc**2).sum(axis=1) * (yc**2).sum(axis=1))
    constant = (np.ptp(x, axis=1) == 0) | (np.ptp(y, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip((xc * yc).sum(axis=1) / den, -1.0, 1.0)
    return np.where(constant, NAN, r)


def _percentile_ci(values: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of the finite replicates; none when fewer than half are finite."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0 or 2 * len(finite) < len(values):
        return NO_CI
    low, high = np.percentile(finite, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(low), float(high)


def _resample(table: _Table, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Backbone means of ``n_boot`` hierarchical replicates, (n_boot, B) each, and which are usable.

    Backbones are drawn with replacement, then each drawn backbone's own rows with replacement (as
    many as it has); a row index draws its score and result together. A replicate with fewer than
    three distinct backbones is unusable, as the point estimate would be.
    """
    n_backbones, k = table.score.shape
    picks = rng.integers(0, n_backbones, size=(n_boot, n_backbones))
    counts = table.counts[picks]
    rows = rng.integers(0, counts[..., None], size=(n_boot, n_backbones, k))
    mask = np.arange(k) < counts[..., None]
    scores = _exact_mean(table.score[picks[..., None], rows], mask, counts)
    results = _exact_mean(table.result[picks[..., None], rows], mask, counts)
    ordered = np.sort(picks, axis=1)
    distinct = 1 + (np.diff(ordered, axis=1) != 0).sum(axis=1)
    return scores, results, distinct >= MIN_BACKBONES


def _bootstrap(
    table: _Table, n_boot: int, level: float, seed: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The τ and r intervals; weightedtau has no vectorised form, so only it loops (≈0.1 ms each)."""
    scores, results, usable = _resample(table, n_boot, np.random.default_rng(seed))
    taus = np.full(n_boot, NAN)
    for i in np.flatnonzero(usable):
        taus[i] = stats.weightedtau(scores[i], results[i]).statistic
    pearsons = np.where(usable, _pearson_rows(scores, results), NAN)
    return _percentile_ci(taus, level), _percentile_ci(pearsons, level)


def _clean(pairs: pd.DataFrame) -> pd.DataFrame:
    """Complete rows only (a NaN score or result is a missing replicate); duplicates averaged."""
    frame = pd.DataFrame(
        {
            "backbone": pairs["backbone"].astype(str),
            "seed": pairs["seed"],
            "score": pd.to_numeric(pairs["score"], errors="coerce").astype(float),
            "result": pd.to_numeric(pairs["result"], errors="coerce").astype(float),
        }
    )
    frame = frame[np.isfinite(frame["score"]) & np.isfinite(frame["result"])]
    return frame.groupby(["backbone", "seed"], as_index=False, sort=True)[["score", "result"]].mean()


def _no_results(pairs: pd.DataFrame) -> Agreement:
    """Scores without any fine-tuned result yet: name the favourite, claim nothing else."""
    score = pd.to_numeric(pairs["score"], errors="coerce").astype(float)
    scored = score[np.isfinite(score)]
    backbones = pairs.loc[scored.index, "backbone"].astype(str)
    predicted = str(scored.groupby(backbones).mean().idxmax()) if len(scored) else ""
    return Agreement(0, 0, NAN, NO_CI, NAN, NO_CI, None, predicted, "", ())


def _tied(clean: pd.DataFrame) -> tuple[str, tuple[str, ...]]:
    """The best backbone by mean result and the set that cannot be told from it (best first)."""
    frame = clean.rename(columns={"backbone": "config", "result": "value"})[["config", "seed", "value"]]
    table = ties_with_best(frame, value="value", higher_is_better=True)
    best = str(table.loc[table["best"], "config"].iloc[0])
    return best, (best, *(str(c) for c in table.loc[table["tie"], "config"]))


def agreement(pairs: pd.DataFrame, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Agreement:
    """Weighted τ and Pearson r of mean score vs mean result, their bootstrap CIs, and the top-1 hit.

    ``pairs`` has one row per (backbone, seed): ``backbone``, ``seed``, ``score`` (repeated when it
    does not depend on the seed) and ``result`` (the fine-tuned test accuracy at that seed). Rows
    with a NaN score or result are dropped, and so are backbones left without rows. The CIs are a
    hierarchical percentile bootstrap (``n_boot`` replicates, reproducible through ``seed``), none
    with one seed per backbone. Ties of the backbone with the highest mean score go to the first
    name in sorted order, as the best by mean result does in ``ties_with_best``.
    """
    require_columns(pairs, COLUMNS, what="agreement")
    if pairs.empty:
        raise StatsError("agreement got no rows: it needs one row per (backbone, seed) with score and result")
    if not 0 < level < 1:
        raise StatsError(f"level must be between 0 and 1 (e.g. 0.95), not {level!r}")
    if n_boot < 1:
        raise StatsError(f"n_boot must be a positive number of bootstrap replicates, not {n_boot!r}")
    clean = _clean(pairs)
    if clean.empty:
        return _no_results(pairs)
    table = _Table.from_frame(clean)
    score_means, result_means = _means(table)
    tau, pearson = _weighted_tau(score_means, result_means), _pearson(score_means, result_means)
    n_seeds = int(table.counts.max())
    tau_ci, pearson_ci = NO_CI, NO_CI
    if n_seeds > 1 and (np.isfinite(tau) or np.isfinite(pearson)):
        tau_ci, pearson_ci = _bootstrap(table, n_boot, level, seed)
    predicted = table.names[int(np.argmax(score_means))]
    best, tied = _tied(clean)
    return Agreement(
        n_backbones=len(table.names),
        n_seeds=n_seeds,
        weighted_tau=tau,
        tau_ci=tau_ci if np.isfinite(tau) else NO_CI,
        pearson=pearson,
        pearson_ci=pearson_ci if np.isfinite(pearson) else NO_CI,
        top1_hit=predicted in tied,
        predicted_best=predicted,
        best=best,
        tied=tied,
    )
