"""One training-set size per cell: the val carve first, then subset / shots / train_examples,
each seeded and recorded with a digest of the drawn indices."""

from __future__ import annotations

import numpy as np
import pytest

from tlbench.data.sizes import draw
from tlbench.data.splits import stratified_split, stratified_subset

LABELS = np.repeat(np.arange(4), [50, 40, 30, 20])


def test_subset_draws_what_it_drew_before_sizes_existed():
    kept, taken = stratified_split(LABELS, 0.1, 0)
    d = draw(LABELS, False, seed=0, subset=0.5)
    assert d.val.tolist() == taken.tolist()
    assert d.train.tolist() == kept[stratified_subset(LABELS[kept], 0.5, 0)].tolist()


def test_shots_keep_val_and_differ_per_seed():
    a, b = draw(LABELS, False, seed=0, shots=5), draw(LABELS, False, seed=1, shots=5)
    assert np.bincount(LABELS[a.train]).tolist() == [5] * 4
    assert len(np.intersect1d(a.train, a.val)) == 0
    assert a.notes["train_sha1"] != b.notes["train_sha1"] and "5 per class" in a.notes["shots"]
    own = draw(LABELS, True, seed=0, shots=5)
    assert own.val is None and "val_sha1" not in own.notes  # the source's val split, untouched


def test_train_examples_replace_the_official_val_and_say_so():
    d = draw(LABELS, True, seed=0, train_examples=50)
    assert (len(d.train), len(d.val)) == (40, 10)
    assert "official val split is not used" in d.notes["val"]


def test_one_size_per_cell():
    with pytest.raises(ValueError, match="exclusive"):
        draw(LABELS, False, seed=0, subset=0.5, shots=2)
