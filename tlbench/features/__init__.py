"""The feature store: pre-logits features of a frozen backbone over whole source splits, on disk,
content-addressed, shared by every cell, run and tuning trial that looks through the same backbone
(``store``: files, locks, budget; ``keys``: what a key is made of)."""

from __future__ import annotations

from tlbench.features.store import FeatureStore, StoreEntry, default_root, store_budget_bytes

__all__ = ["FeatureStore", "StoreEntry", "default_root", "store_budget_bytes"]
