"""Datasets as uint8 tensors split three ways, and the batched on-device augmentation.

The torch-free names (the catalog of datasets and augmentations) are imported eagerly, so the
spec layer can read them without torch; the names that need torch (``load_dataset``,
``make_augment``, the split types) load on first use (PEP 562 ``__getattr__``), so
``from tlbench.data import load_dataset`` works as before and costs torch only there.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tlbench.catalog.datasets import AUGMENTATIONS, CATALOG, DatasetNotFoundError, dataset_param_names

if TYPE_CHECKING:
    from tlbench.data.augment import make_augment
    from tlbench.data.base import DatasetSplits, TensorSplit
    from tlbench.data.datasets import DATASETS, load_dataset

_LAZY = {
    "DATASETS": "tlbench.data.datasets",
    "load_dataset": "tlbench.data.datasets",
    "DatasetSplits": "tlbench.data.base",
    "TensorSplit": "tlbench.data.base",
    "make_augment": "tlbench.data.augment",
}

__all__ = [
    "AUGMENTATIONS",
    "CATALOG",
    "DATASETS",
    "DatasetNotFoundError",
    "DatasetSplits",
    "TensorSplit",
    "dataset_param_names",
    "load_dataset",
    "make_augment",
]


def __getattr__(name: str) -> Any:
    """Import the module that holds ``name`` the first time it is asked for (it needs torch)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
