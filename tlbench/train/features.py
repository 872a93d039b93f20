"""Frozen-backbone features through the shared feature store (``tlbench.features``).

A cell whose first phase trains a head on cached features asks the store for its source splits'
features before its first epoch: a hit is read from disk, a miss takes the key's lock (another
process extracting the same key is waited for, then reused) and is extracted once, over the whole
uncarved source split, when the phase needs it. The cell's train and val rows are then selected
by index, so every subset, val carve and replicate draw of a source shares one extraction.
"""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tlbench.cells import Cell
from tlbench.data import DatasetSplits, TensorSplit
from tlbench.features.keys import entry_keys
from tlbench.features.store import FeatureStore, default_root
from tlbench.train.evaluation import extract_features
from tlbench.train.setup import Setup, to_device


@dataclass
class StoredFeatures:
    """One cell's view of the store: entry keys per source split, what was hit, what to extract."""

    store: FeatureStore
    fields: dict[str, Any]
    sources: dict[str, TensorSplit]
    rows: dict[str, tuple[str, np.ndarray | None]]
    keys: dict[str, str]
    status: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    locks: dict[str, AbstractContextManager[None]] = field(default_factory=dict)

    def params(self) -> dict[str, str]:
        """The run's params: hit (every split read from the store) or extracted, and the keys."""
        return {
            "feature_store": "hit" if all(v == "hit" for v in self.status.values()) else "extracted",
            "feature_store.splits": ",".join(f"{k}:{v}" for k, v in sorted(self.status.items())),
            "feature_store.key": ",".join(f"{k}:{v}" for k, v in sorted(self.keys.items())),
        }

    def lookup(self) -> None:
        """Read every hit; lock every miss (in key order: no deadlock), re-reading after a wait."""
        for src in sorted(self.keys, key=self.keys.__getitem__):
            key = self.keys[src]
            got = self.store.get(key)
            if got is None:
                lock = self.store.lock(key)
                lock.__enter__()
                got = self.store.get(key)  # another process may have extracted it meanwhile
                if got is None:
                    self.locks[src] = lock
                    self.status[src] = "extracted"
                    continue
                lock.__exit__(None, None, None)
            self.tensors[src], self.status[src] = got["features"], "hit"

    def split(self, name: str, s: Setup, batch_size: int) -> torch.Tensor:
        """The cell's split ``name`` as float32 features on the device (extracting its source first
        if this process holds its lock)."""
        src, rows = self.rows[name]
        if src not in self.tensors:
            self._extract(src, s, batch_size)
        feats = (
            self.tensors[src] if rows is None else self.tensors[src][torch.as_tensor(rows, dtype=torch.long)]
        )
        return feats.to(s.device, non_blocking=True).float()

    def _extract(self, src: str, s: Setup, batch_size: int) -> None:
        split = to_device(self.sources[src], s.device)
        feats = extract_features(
            s.model,
            split,
            s.eval_tf,
            batch_size=batch_size,
            autocast=s.autocast,
            channels_last=s.channels_last,
            keep_dtype=True,
        ).cpu()
        fields = {**self.fields, "split": src, "rows": len(split)}
        try:
            self.store.put(
                self.keys[src], {"features": feats, "labels": self.sources[src].labels.cpu()}, fields
            )
        except OSError as err:  # a full or read-only disk only costs the next cell its reuse
            warnings.warn(f"feature store: could not write {self.keys[src]} ({err})", stacklevel=2)
        self.tensors[src] = feats
        self.locks.pop(src).__exit__(None, None, None)

    def close(self) -> None:
        """Release the locks of entries never extracted (a failed or paused cell)."""
        for lock in self.locks.values():
            lock.__exit__(None, None, None)
        self.locks.clear()


def split_features(cell: Cell, s: Setup, split: str, *, from_store: bool = True) -> torch.Tensor:
    """A split's pre-logits features as float32 on the device: from the cell's store entry when
    it has one (and ``from_store``: the store holds the first phase's backbone), else extracted now."""
    if from_store and s.stored is not None:
        return s.stored.split(split, s, cell.train.eval_batch_size)
    kw = dict(batch_size=cell.train.eval_batch_size, autocast=s.autocast, channels_last=s.channels_last)
    return extract_features(s.model, getattr(s, split), s.eval_tf, **kw)


def open_store(cell: Cell, s: Setup, data: DatasetSplits, *, enabled: bool) -> StoredFeatures | None:
    """The store for a cell whose first phase trains on cached features; None when off or unused.
    Test features are asked for only when every phase is cached (the backbone never changes)."""
    if not (enabled and s.cached and s.cached[0]):
        return None
    root = default_root(data.origin.root if data.origin else None)
    if root is None:
        return None
    splits = ("train", "val", *(("test",) if all(s.cached) else ()))
    fields, sources, rows, keys = entry_keys(cell, s, data, splits)
    stored = StoredFeatures(FeatureStore(root), fields, sources, rows, keys)
    stored.lookup()
    return stored
