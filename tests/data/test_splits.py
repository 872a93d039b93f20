"""Stratified val carving and subsets: disjoint, stable, balanced, seed-dependent."""

from __future__ import annotations

import numpy as np
import pytest

from tlbench.data.splits import stratified_split, stratified_subset

LABELS = np.repeat(np.arange(5), [40, 30, 20, 10, 3])


def test_split_is_disjoint_complete_and_stratified():
    kept, taken = stratified_split(LABELS, 0.2, seed=0)
    assert len(np.intersect1d(kept, taken)) == 0
    assert sorted(np.concatenate([kept, taken]).tolist()) == list(range(len(LABELS)))
    counts = np.bincount(LABELS[taken], minlength=5)
    assert counts.tolist() == [8, 6, 4, 2, 1]  # 20% of each class, at least one


def test_split_is_stable_and_seeded():
    a = stratified_split(LABELS, 0.2, seed=3)[1]
    b = stratified_split(LABELS, 0.2, seed=3)[1]
    np.random.seed(123)  # global RNG state must not matter
    c = stratified_split(LABELS, 0.2, seed=3)[1]
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert not np.array_equal(a, stratified_split(LABELS, 0.2, seed=4)[1])


def test_subset_keeps_every_class():
    idx = stratified_subset(LABELS, 0.1, seed=0)
    counts = np.bincount(LABELS[idx], minlength=5)
    assert counts.tolist() == [4, 3, 2, 1, 1]
    assert np.array_equal(idx, np.sort(idx))
    assert len(stratified_subset(LABELS, 1.0, seed=0)) == len(LABELS)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1])
def test_split_rejects_bad_fraction(bad):
    with pytest.raises(ValueError):
        stratified_split(LABELS, bad, seed=0)


def test_shots_are_exact_per_class_and_seeded():
    from tlbench.data.splits import SizeError, stratified_shots

    a, b, c = (stratified_shots(LABELS, 3, seed=s) for s in (0, 0, 1))
    assert np.bincount(LABELS[a]).tolist() == [3] * 5
    assert a.tolist() == b.tolist() != c.tolist()
    with pytest.raises(SizeError, match="class 4, which has 3"):
        stratified_shots(LABELS, 4, seed=0)


def test_train_examples_are_exact_in_total_stratified_and_disjoint():
    from tlbench.data.splits import train_examples_split

    for n in (10, 25, 100):  # uneven classes: per-class roundings still sum to exactly n
        tr, va = train_examples_split(LABELS, n, seed=2)
        assert (len(tr), len(va)) == (n - n // 5, n // 5)
        assert len(np.intersect1d(tr, va)) == 0
    tr, _ = train_examples_split(LABELS, 100, seed=2)
    assert np.bincount(LABELS[tr]).tolist()[0] > np.bincount(LABELS[tr]).tolist()[3]  # in proportion
    assert (
        train_examples_split(LABELS, 50, seed=3)[0].tolist()
        != train_examples_split(LABELS, 50, seed=4)[0].tolist()
    )


def test_per_class_split_takes_first_then_second_or_the_rest():
    from tlbench.data.splits import per_class_split

    a, b = per_class_split(LABELS, 5, None, seed=0)
    assert np.bincount(LABELS[a]).tolist() == [5, 5, 5, 5, 3]
    assert len(a) + len(b) == len(LABELS) and len(np.intersect1d(a, b)) == 0
    a, b = per_class_split(LABELS, 5, 5, seed=0)
    assert np.bincount(LABELS[b], minlength=5).tolist() == [5, 5, 5, 5, 0]
