"""Stratified, seeded index splits: carving val (or test) out of train, and train subsets.

Indices depend only on the labels and the seed (numpy's ``default_rng``), never on global RNG
state, so a cell's splits are the same in every process and on every machine.
"""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, taken) with ``fraction`` of every class taken (at least one)."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    taken: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        k = int(round(len(idx) * fraction))
        k = min(max(k, 1), len(idx) - 1) if len(idx) > 1 else 0
        taken.append(idx[:k])
    taken_idx = np.sort(np.concatenate(taken)) if taken else np.array([], dtype=np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), taken_idx, assume_unique=True)
    return kept, taken_idx


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a stratified ``fraction`` of the samples, at least one per class."""
    if not 0 < fraction <= 1:
        raise ValueError(f"subset must be in (0, 1], got {fraction}")
    if fraction == 1:
        return np.arange(len(labels))
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed + 1_000_003)  # independent of the val carve with the same seed
    chosen: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = max(1, int(round(len(idx) * fraction)))
        chosen.append(idx[rng.permutation(len(idx))[:k]])
    return np.sort(np.concatenate(chosen))
