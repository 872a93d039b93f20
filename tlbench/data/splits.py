"""Stratified, seeded index splits: the one test carve, the val carve, and train subsets.

Indices depend only on the labels and the seed (numpy's ``default_rng``), never on global RNG
state, so a cell's splits are the same in every process and on every machine. A test split carved
where a source has none (digits, a one-folder ImageFolder, Caltech-101, SUN397, EuroSAT, ...) is
carved here, with ``TEST_SEED``: it never moves with the grid's seeds.
"""

from __future__ import annotations

import hashlib

import numpy as np

from tlbench.errors import TlbenchError


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


def per_class_split(
    labels: np.ndarray, first: int, second: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(``first`` per class, then ``second`` per class or the rest): Caltech-101's 30 train and the
    rest test, SUN397's 50 + 50. A class with too few images gives what it has (the first part first)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    a: list[np.ndarray] = []
    b: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        a.append(idx[:first])
        b.append(idx[first:] if second is None else idx[first : first + second])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


TEST_SEED = 0  # every carved test split: fixed, whatever the grid's (or a replicate's) seed


def carve_test(
    labels: np.ndarray, carve: float | tuple[int, int | None]
) -> tuple[np.ndarray, np.ndarray, str]:
    """(train rows, test rows, what was done) for a source without a test split: a stratified
    fraction of every class (``0.2``), or ``(k, m)`` per class: k train and m test (None: the rest)."""
    if isinstance(carve, tuple):
        keep, take = per_class_split(labels, carve[0], carve[1], TEST_SEED)
        rest = "the rest" if carve[1] is None else f"{carve[1]}"
        return keep, take, f"{carve[0]} train and {rest} test per class (seed {TEST_SEED})"
    keep, take = stratified_split(labels, carve, TEST_SEED)
    return keep, take, f"{carve:.0%} of every class carved (stratified, seed {TEST_SEED})"


class SizeError(TlbenchError, ValueError):
    """A training-set size the data cannot give (more shots than a class has images)."""


def stratified_shots(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """Sorted indices of exactly ``shots`` samples of every class, drawn with ``seed``."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed + 2_000_003)  # independent of the val carve with the same seed
    chosen: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < shots:
            raise SizeError(
                f"shots: {shots} needs {shots} training images of class {c}, which has {len(idx)}"
            )
        chosen.append(idx[rng.permutation(len(idx))[:shots]])
    return np.sort(np.concatenate(chosen))


def _proportional(counts: np.ndarray, total: int) -> np.ndarray:
    """``total`` split over classes in proportion to ``counts`` (largest remainders): exact sum."""
    quota = counts * total / counts.sum()
    out = np.floor(quota).astype(np.int64)
    for i in np.argsort(-(quota - out), kind="stable")[: total - int(out.sum())]:
        out[i] += 1
    return out


def train_examples_split(labels: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """VTAB-1k: ``n`` images of train, 80 % train and 20 % val (1000 -> 800 + 200), both exact in
    total and stratified (classes in proportion to their share of train), drawn with ``seed``."""
    labels = np.asarray(labels)
    if n > len(labels):
        raise SizeError(f"train_examples: {n} asks for more images than train has ({len(labels)})")
    n_val = n // 5
    classes, counts = np.unique(labels, return_counts=True)
    rng = np.random.default_rng(seed + 3_000_017)
    train: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for c, k_all, k_val in zip(classes, _proportional(counts, n), _proportional(counts, n_val), strict=True):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))][:k_all]
        k_val = min(int(k_val), len(idx))
        val.append(idx[:k_val])
        train.append(idx[k_val:])
    tr, va = np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
    return _rebalance(tr, va, n - n_val, rng)


def _rebalance(
    tr: np.ndarray, va: np.ndarray, n_train: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Move images between the two parts until train holds exactly ``n_train`` (the per-class
    roundings of the two quotas can differ by a few)."""
    while len(tr) > n_train:
        i = rng.integers(len(tr))
        va, tr = np.sort(np.append(va, tr[i])), np.delete(tr, i)
    while len(tr) < n_train:
        i = rng.integers(len(va))
        tr, va = np.sort(np.append(tr, va[i])), np.delete(va, i)
    return tr, va


def indices_digest(indices: np.ndarray) -> str:
    """A short sha1 of drawn indices: two runs drew the same images iff their digests match."""
    return hashlib.sha1(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:12]
