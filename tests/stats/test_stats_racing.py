"""The racing rule: beaten with confidence over shared seeds, or successive halving with one seed,
by what a configuration's learning curve could still reach."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from tlbench.stats import race_decisions
from tlbench.stats.race_rule import headroom


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


# headroom: what a curve can still gain (crossing curves) ----------------------------------------


def test_headroom_extrapolates_a_slowing_curve_and_leaves_a_rising_one_unbounded():
    # gains 0.2 then 0.1: each next gain half the last, 0.05 + 0.025 + 0.0125 over 3 epochs
    assert headroom([[0.3, 0.5, 0.6]], 3) == pytest.approx(0.0875)
    assert headroom([[0.3, 0.5, 0.6]], 0) == 0.0  # nothing left to train
    assert headroom([[0.1, 0.2, 0.4]], 6) == math.inf  # speeding up: it could cross anything
    assert headroom([[0.5, 0.5, 0.7]], 6) == math.inf  # a stall, then a gain: not slowing down
    assert headroom([[0.3, 0.5]], 6) == math.inf  # two epochs: no trend yet
    assert headroom([[0.1, 0.1, 0.1]], 6) == 0.0  # no seed gained anything in its last epoch
    # the seeds' mean curve: one seed speeding up, one slowing, gains 0.15 and 0.15 on average
    assert headroom([[0.1, 0.2, 0.4], [0.3, 0.5, 0.6]], 6) == math.inf
    # only the last three epochs count
    assert headroom([[0.1, 0.2, 0.5, 0.7, 0.8]], 3) == headroom([[0.5, 0.7, 0.8]], 3)


def test_a_curve_that_still_climbs_is_kept_where_its_level_alone_would_drop_it():
    """At the rung, 'late' trails with confidence; with a rising curve its headroom is unbounded."""
    values = {
        "early": {0: 0.84, 1: 0.85, 2: 0.86},
        "late": {0: 0.49, 1: 0.50, 2: 0.51},
        "flat": {0: 0.43, 1: 0.44, 2: 0.45},
    }
    final = race_decisions(values)  # as if the values were final: the old rule
    assert {d.config for d in final} == {"late", "flat"}
    room = {"early": 0.01, "late": math.inf, "flat": 0.06}
    drops = race_decisions(values, headroom=room)
    assert [d.config for d in drops] == ["flat"] and "+ headroom 0.0600" in drops[0].why
    # a headroom that closes the gap keeps it too; an unknown one (missing) keeps it
    assert race_decisions(values, headroom={**room, "flat": 0.4}) == []
    assert race_decisions(values, headroom={"early": 0.0, "late": math.inf}) == []


def test_one_seed_halving_keeps_a_configuration_that_could_still_catch_the_leader():
    values = {"c0": {0: 0.9}, "c1": {0: 0.8}, "c2": {0: 0.5}, "c3": {0: 0.4}}
    assert {d.config for d in race_decisions(values, eta=3)} == {"c2", "c3"}  # the top 2 of 4 stay
    room = {"c0": 0.0, "c1": 0.0, "c2": math.inf, "c3": 0.1}
    assert {d.config for d in race_decisions(values, eta=3, headroom=room)} == {"c3"}
    assert race_decisions(values, eta=3, headroom={**room, "c3": 0.5}) == []  # 0.4 + 0.5 >= 0.9
