"""Which configurations of a comparison group can no longer win: the racing rule at one rung.

With replicates (a configuration with 2+ seeds), a configuration is dropped when it is beaten
**with confidence**: the upper bound of its ``level`` interval of best-validation accuracy is
below the group leader's lower bound, both over the seeds they share (fewer than 2 shared seeds:
kept). Near-ties are never dropped, so the winner and its ties run to the end.

With one seed per configuration there is no interval; then **successive halving** keeps the top
``ceil(k / eta)`` of the k configurations (all that tie with the last one kept).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tlbench.stats.intervals import summarize

CONFIDENCE = "confidence"
HALVING = "halving"


@dataclass(frozen=True)
class Drop:
    """A configuration raced out at a rung: by which rule, to which leader, and why (numbers)."""

    config: str
    leader: str
    rule: str  # CONFIDENCE | HALVING
    why: str


def _leader(values: Mapping[str, Mapping[int, float]]) -> str:
    """The configuration with the highest mean (the first in order among exact ties)."""
    means = {c: float(np.mean(list(v.values()))) for c, v in values.items()}
    return max(means, key=lambda c: means[c])


def race_decisions(
    values: Mapping[str, Mapping[int, float]], *, level: float = 0.95, eta: int = 3
) -> list[Drop]:
    """``values``: configuration -> {seed: best validation accuracy so far}; the drops, in order."""
    values = {c: v for c, v in values.items() if v}
    if len(values) < 2:
        return []
    leader = _leader(values)
    if max(len(v) for v in values.values()) >= 2:
        return _by_confidence(values, leader, level)
    return _by_halving(values, leader, eta)


def _by_confidence(values: Mapping[str, Mapping[int, float]], leader: str, level: float) -> list[Drop]:
    drops = []
    for config, v in values.items():
        shared = sorted(set(v) & set(values[leader]))
        if config == leader or len(shared) < 2:
            continue
        own = summarize([v[s] for s in shared], level=level)
        best = summarize([values[leader][s] for s in shared], level=level)
        if own.ci_high < best.ci_low:
            why = (
                f"upper {level:.0%} bound {own.ci_high:.4f} < leader's lower bound {best.ci_low:.4f} "
                f"(best val acc over seeds {shared}: mean {own.mean:.4f} vs {best.mean:.4f})"
            )
            drops.append(Drop(config, leader, CONFIDENCE, why))
    return drops


def _by_halving(values: Mapping[str, Mapping[int, float]], leader: str, eta: int) -> list[Drop]:
    score = {c: next(iter(v.values())) for c, v in values.items()}
    ranked = sorted(score, key=lambda c: score[c], reverse=True)
    keep = math.ceil(len(ranked) / eta)
    cutoff = score[ranked[keep - 1]]
    return [
        Drop(
            c,
            leader,
            HALVING,
            f"best val acc {score[c]:.4f} below the top {keep} of {len(ranked)} (cut at {cutoff:.4f}; one seed)",
        )
        for c in ranked
        if score[c] < cutoff
    ]
