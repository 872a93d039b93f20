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
