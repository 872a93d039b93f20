"""Which configurations of a comparison group can no longer win: the racing rule at one rung.

A configuration is compared by what it could still **reach**: its best validation accuracy so far
plus its **headroom**, the gain its learning curve still promises over the epochs it has left
(``headroom``). Curves cross: a high learning rate often trails at an early rung and overtakes
once its schedule anneals, so a level behind the leader is not enough to drop a configuration.

With replicates (a configuration with 2+ seeds), a configuration is dropped when it is beaten
**with confidence**: the upper bound of its ``level`` interval of best-validation accuracy, plus
its headroom, is below the group leader's lower bound, both over the seeds they share (fewer than
2 shared seeds: kept). The leader's best so far can only grow, so its lower bound holds at the end.
Near-ties are never dropped, so the winner and its ties run to the end.

With one seed per configuration there is no interval; then **successive halving** keeps the top
``ceil(k / eta)`` of the k configurations (all that tie with the last one kept), and any other
whose reach is not below the leader's value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
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


def headroom(curves: Iterable[Sequence[float]], left: int) -> float:
    """What a configuration's best-so-far curve can still gain in ``left`` more epochs.

    ``curves``: one per seed, best validation accuracy after epoch 1, 2, ... up to now (a
    replicate's best so far). Their mean curve is extrapolated as an exponential saturation
    (``a - b r^t``) through its last three points: its last gain ``g`` keeps shrinking by the
    ratio ``r`` of its last two gains, so it still gains ``g (r + r^2 + ... + r^left)``. A curve
    that is not slowing down (its last gain as large as the one before, or the one before zero)
    or too short to tell (fewer than 3 epochs) has unbounded headroom: it could still cross
    anything. A curve whose last epoch gained nothing (on every seed) is taken as saturated.
    Nothing left to train: no headroom.
    """
    if left <= 0:
        return 0.0
    tails = [list(c) for c in curves]
    n = min((len(c) for c in tails), default=0)
    if n < 3:
        return math.inf
    mean = np.mean([c[n - 3 : n] for c in tails], axis=0)
    before, last = float(mean[1] - mean[0]), float(mean[2] - mean[1])
    if last <= 0:
        return 0.0
    if before <= 0 or last >= before:
        return math.inf
    r = last / before
    return last * r * (1 - r**left) / (1 - r)


def _leader(values: Mapping[str, Mapping[int, float]]) -> str:
    """The configuration with the highest mean (the first in order among exact ties)."""
    means = {c: float(np.mean(list(v.values()))) for c, v in values.items()}
    return max(means, key=lambda c: means[c])


def race_decisions(
    values: Mapping[str, Mapping[int, float]],
    *,
    level: float = 0.95,
    eta: int = 3,
    headroom: Mapping[str, float] | None = None,
) -> list[Drop]:
    """``values``: configuration -> {seed: best validation accuracy so far}; the drops, in order.

    ``headroom``: configuration -> what it can still gain (``race_rule.headroom``; a missing
    configuration: unbounded); None: the values are final (nothing left to train)."""
    values = {c: v for c, v in values.items() if v}
    if len(values) < 2:
        return []
    room = {c: 0.0 if headroom is None else headroom.get(c, math.inf) for c in values}
    leader = _leader(values)
    if max(len(v) for v in values.values()) >= 2:
        return _by_confidence(values, leader, level, room)
    return _by_halving(values, leader, eta, room)


def _plus(room: float) -> str:
    return f" + headroom {room:.4f}" if room else ""


def _by_confidence(
    values: Mapping[str, Mapping[int, float]], leader: str, level: float, room: Mapping[str, float]
) -> list[Drop]:
    drops = []
    for config, v in values.items():
        shared = sorted(set(v) & set(values[leader]))
        if config == leader or len(shared) < 2 or math.isinf(room[config]):
            continue
        own = summarize([v[s] for s in shared], level=level)
        best = summarize([values[leader][s] for s in shared], level=level)
        if own.ci_high + room[config] < best.ci_low:
            why = (
                f"upper {level:.0%} bound {own.ci_high:.4f}{_plus(room[config])} < leader's lower "
                f"bound {best.ci_low:.4f} (best val acc over seeds {shared}: mean {own.mean:.4f} vs "
                f"{best.mean:.4f})"
            )
            drops.append(Drop(config, leader, CONFIDENCE, why))
    return drops


def _by_halving(
    values: Mapping[str, Mapping[int, float]], leader: str, eta: int, room: Mapping[str, float]
) -> list[Drop]:
    score = {c: next(iter(v.values())) for c, v in values.items()}
    ranked = sorted(score, key=lambda c: score[c], reverse=True)
    keep = math.ceil(len(ranked) / eta)
    cutoff = score[ranked[keep - 1]]
    return [
        Drop(
            c,
            leader,
            HALVING,
            f"best val acc {score[c]:.4f}{_plus(room[c])} below the top {keep} of {len(ranked)} "
            f"(cut at {cutoff:.4f}) and the leader's {score[leader]:.4f}; one seed",
        )
        for c in ranked
        if score[c] < cutoff and score[c] + room[c] < score[leader]
    ]
