"""What a feature-store key is made of: everything that can change a frozen backbone's features.

The backbone's weights enter as a digest of its loaded tensors (every parameter and buffer but the
classifier's), which covers every source at once: a weight file's bytes, a hub tag at whatever
revision the Hugging Face cache resolved, a ``cell:``/``run:`` checkpoint, a random init's seed,
and model kwargs that change a shape. The source split enters as a fingerprint of its pixels and
labels (or of its files), never the cell's drawn rows: subsets and seeds share an entry.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch
import torch.nn as nn

STORE_VERSION = "1"  # bump when extraction changes in a way no other field shows
TRANSFORM = "resize-bilinear+normalize/v1"  # the deterministic eval transform (augment.make_augment)
# model kwargs that only act in training mode: they never change eval-mode features
TRAINING_ONLY_KWARGS = frozenset(
    {"drop_rate", "drop_path_rate", "drop_block_rate", "proj_drop_rate", "attn_drop_rate"}
)


def digest(obj: Any, n: int = 24) -> str:
    """A short stable digest of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _bytes(t: torch.Tensor) -> memoryview:
    return memoryview(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def backbone_digest(model: nn.Module) -> str:
    """Digest of the backbone's tensors as loaded (names, dtypes, shapes, bytes); the classifier,
    which a probe replaces, and BatchNorm's step counters, which eval mode ignores, are left out."""
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    skip = {id(p) for p in classifier.parameters()} if isinstance(classifier, nn.Module) else set()
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted({**dict(model.named_parameters()), **dict(model.named_buffers())}.items()):
        if id(t) in skip or name.endswith("num_batches_tracked"):
            continue
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(_bytes(t))
    return h.hexdigest()


def content_fingerprint(images: Any, labels: torch.Tensor) -> str:
    """A split's identity from its pixels and labels (a streamed split: its file names, sizes, mtimes)."""
    h = hashlib.blake2b(digest_size=16)
    if isinstance(images, torch.Tensor):
        h.update(f"{tuple(images.shape)}".encode())
        h.update(_bytes(images))
    else:
        from pathlib import Path

        from tlbench.data.cache import file_fingerprint

        h.update(file_fingerprint([Path(p) for p in images.paths]).encode())
        h.update(str(images.size).encode())
    h.update(_bytes(labels))
    return h.hexdigest()


def model_kwargs_for_key(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The head-independent model kwargs that can change features (training-only ones dropped)."""
    return {k: v for k, v in sorted(kwargs.items()) if k not in TRAINING_ONLY_KWARGS}


def rows_digest(rows: np.ndarray | None) -> str:
    return (
        "all"
        if rows is None
        else hashlib.sha1(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()[:12]
    )
