"""scikit-learn's 8x8 handwritten digits: a dataset that ships with a Python package (offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tlbench.catalog.datasets import RawSplits
from tlbench.data.splits import carve_test


def load(data_dir: Path, download: bool) -> RawSplits:
    """The 1,797 images as uint8 (N, 1, 8, 8), with a fixed stratified 20% test split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(np.rint(d.images * (255 / 16)), 0, 255).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    labels = d.target.astype(np.int64)
    train_idx, test_idx, _ = carve_test(labels, 0.2)  # fixed, whatever the grid's seed
    return RawSplits(
        train=(images[train_idx], labels[train_idx]),
        test=(images[test_idx], labels[test_idx]),
        classes=[str(i) for i in range(10)],
        source="scikit-learn load_digits",
        notes={"test": "fixed stratified 20% of the 1,797 images"},
    )
