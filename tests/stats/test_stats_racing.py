"""The racing rule: beaten with confidence over shared seeds, or successive halving with one seed."""

from __future__ import annotations

import pytest
from scipy import stats

from tlbench.stats import race_decisions


def _t_bounds(values: list[float]) -> tuple[float, float]:
    low, high = stats.t.interval(
        0.95, len(values) - 1, loc=sum(values) / len(values), scale=stats.sem(values)
    )
    return low, high


def test_a_clearly_beaten_configuration_is_dropped_with_its_numbers():
    values = {
        "good": {0: 0.90, 1: 0.91, 2: 0.92},
        "bad": {0: 0.30, 1: 0.33, 2: 0.31},
        "near": {0: 0.905, 1: 0.90, 2: 0.915},
    }
    drops = race_decisions(values)
    assert [(d.config, d.leader, d.rule) for d in drops] == [("bad", "good", "confidence")]
    upper_bad, lower_good = _t_bounds([0.30, 0.33, 0.31])[1], _t_bounds([0.90, 0.91, 0.92])[0]
    assert f"{upper_bad:.4f}" in drops[0].why and f"{lower_good:.4f}" in drops[0].why


def test_overlapping_intervals_keep_both():
    """0.80 vs 0.90 in means, but the seeds scatter: the intervals overlap, nobody is dropped."""
    values = {"a": {0: 0.95, 1: 0.80, 2: 0.95}, "b": {0: 0.70, 1: 0.90, 2: 0.80}}
    assert _t_bounds([0.70, 0.90, 0.80])[1] > _t_bounds([0.95, 0.80, 0.95])[0]
    assert race_decisions(values) == []


def test_only_shared_seeds_count_and_fewer_than_two_keep():
    values = {"a": {0: 0.9, 1: 0.91, 2: 0.92}, "b": {2: 0.1, 3: 0.1, 4: 0.1}}  # one shared seed
    assert race_decisions(values) == []


@pytest.mark.parametrize(
    ("scores", "kept"),
    [
        ([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], {"c0", "c1"}),  # ceil(6 / 3) = 2
        ([0.9, 0.8, 0.8, 0.6], {"c0", "c1", "c2"}),  # ceil(4 / 3) = 2, and the tie at the cut stays
        ([0.9, 0.1], {"c0"}),
    ],
)
def test_one_seed_is_successive_halving(scores, kept):
    values = {f"c{i}": {0: s} for i, s in enumerate(scores)}
    drops = race_decisions(values, eta=3)
    assert {f"c{i}" for i in range(len(scores))} - {d.config for d in drops} == kept
    assert {d.rule for d in drops} <= {"halving"} and all(d.leader == "c0" for d in drops)


def test_a_lone_configuration_is_never_dropped():
    assert race_decisions({"a": {0: 0.1, 1: 0.2}}) == []
