"""How much of train a cell sees: the val carve, then ``subset``, ``shots`` or ``train_examples``.

Indices are drawn from the source's train split with the cell's data seed (``train.data_seed``,
else ``train.seed``), so each replicate of a ``seeds:`` grid draws its own subset; the notes say
what was drawn, with a digest of the indices (``data.train_sha1``: equal digests, equal images).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tlbench.data.splits import (
    indices_digest,
    stratified_shots,
    stratified_split,
    stratified_subset,
    train_examples_split,
)


@dataclass
class Drawn:
    """Indices into the source's train split; ``val`` None: the source's own val split is used."""

    train: np.ndarray
    val: np.ndarray | None
    notes: dict[str, str] = field(default_factory=dict)


def draw(
    labels: np.ndarray,
    has_val: bool,
    *,
    seed: int,
    val_fraction: float = 0.1,
    subset: float | None = None,
    shots: int | None = None,
    train_examples: int | None = None,
) -> Drawn:
    """The cell's train (and carved val) indices; at most one of subset / shots / train_examples."""
    if sum(v is not None for v in (subset, shots, train_examples)) > 1:
        raise ValueError("subset, shots and train_examples are exclusive: a cell takes one training-set size")
    if subset is not None and not 0 < subset <= 1:
        raise ValueError(f"subset is a fraction of train in (0, 1], got {subset}")
    labels = np.asarray(labels)
    if train_examples is not None:
        tr, va = train_examples_split(labels, train_examples, seed)
        notes = {
            "val": f"{len(va)} of the {train_examples} train_examples (VTAB-1k style, stratified, seed {seed})",
            "train_examples": f"{len(tr)} train + {len(va)} val drawn from the official train split (seed {seed})",
        }
        if has_val:
            notes["val"] += "; the official val split is not used"
        return _digested(Drawn(tr, va, notes))
    pool, val, notes = np.arange(len(labels)), None, {}
    if not has_val:
        pool, val = stratified_split(labels, val_fraction, seed)
        notes["val"] = f"carved {val_fraction:.0%} of train (stratified, seed {seed})"
    if subset is not None and subset < 1:
        pool = pool[stratified_subset(labels[pool], subset, seed)]
        notes["subset"] = f"stratified {subset:.0%} of train: {len(pool)} images (seed {seed})"
    if shots is not None:
        pool = pool[stratified_shots(labels[pool], shots, seed)]
        notes["shots"] = f"{shots} per class: {len(pool)} images (stratified, seed {seed}); val as is"
    return _digested(Drawn(pool, val, notes))


def _digested(d: Drawn) -> Drawn:
    d.notes["train_sha1"] = indices_digest(d.train)
    if d.val is not None:
        d.notes["val_sha1"] = indices_digest(d.val)
    return d
