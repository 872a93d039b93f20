"""The procedural IFS dataset: deterministic, balanced, non-blank, classes tell apart."""

from __future__ import annotations

import numpy as np

from tlbench.data.synthetic import generate


def test_deterministic_and_seeded():
    a, la = generate(4, 10, 24, seed=1)
    b, lb = generate(4, 10, 24, seed=1)
    assert a.dtype == np.uint8 and a.shape == (40, 3, 24, 24)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    c, _ = generate(4, 10, 24, seed=2)
    assert not np.array_equal(a, c)
    d, _ = generate(4, 10, 24, seed=1, split_seed=1)  # another split: same classes, new renders
    assert not np.array_equal(a, d)


def test_balanced_and_not_blank():
    x, y = generate(5, 12, 32, seed=0)
    assert np.bincount(y).tolist() == [12] * 5
    per_image_std = x.reshape(len(x), -1).std(axis=1)
    assert (per_image_std > 10).all()


def test_other_sizes():
    x, _ = generate(3, 2, 64, seed=0)
    assert x.shape == (6, 3, 64, 64)


def test_classes_are_distinguishable():
    """A nearest-centroid classifier on shape masks beats chance by far: classes differ in shape."""
    x, y = generate(6, 60, 32, seed=0)
    xt, yt = generate(6, 30, 32, seed=0, split_seed=1)

    def feats(a):
        bright = a.astype(np.float32).mean(axis=1)  # the shape is brighter than its background
        mask = bright > bright.reshape(len(a), -1).mean(axis=1)[:, None, None]
        return mask.reshape(len(a), 8, 4, 8, 4).mean(axis=(2, 4)).reshape(len(a), -1)

    f, ft = feats(x), feats(xt)
    centroids = np.stack([f[y == c].mean(axis=0) for c in range(6)])
    pred = np.argmin(((ft[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (pred == yt).mean() > 0.5  # chance is 1/6
