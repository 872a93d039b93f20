"""What a feature-store key is made of, and where it is built: everything that can change a
frozen backbone's features (``entry_keys``, one key per source split a cell reads).

The backbone's weights enter as a digest of its loaded tensors (every parameter and buffer but the
classifier's), which covers every source at once: a weight file's bytes, a hub tag at whatever
revision the Hugging Face cache resolved, a ``cell:``/``run:`` checkpoint, a random init's seed,
and model kwargs that change a shape. The source split enters as a fingerprint of its pixels and
labels (or of its files), never the cell's drawn rows: subsets and seeds share an entry.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

if TYPE_CHECKING:
    from tlbench.cells import Cell
    from tlbench.data import DatasetSplits, TensorSplit

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


def _sources(
    data: DatasetSplits,
) -> tuple[dict[str, TensorSplit], dict[str, tuple[str, np.ndarray | None]], str]:
    """Source splits, where each of the cell's splits comes from (source, rows), and a fingerprint
    of the source ("" where the pixels themselves are hashed)."""
    o = data.origin
    if o is None:  # splits built by hand: each is its own source
        return (
            {"train": data.train, "val": data.val, "test": data.test},
            {k: (k, None) for k in ("train", "val", "test")},
            "",
        )
    sources = {"train": o.train, "test": data.test}
    rows: dict[str, tuple[str, np.ndarray | None]] = {
        "train": ("train", o.train_rows),
        "test": ("test", None),
    }
    if o.val_rows is None and o.val is not None:
        sources["val"], rows["val"] = o.val, ("val", None)
    else:
        rows["val"] = ("train", o.val_rows)
    return sources, rows, o.fingerprint


def _fingerprint(split: TensorSplit, name: str, known: str) -> str:
    if known:
        return f"{known}|{name}|{len(split)}"
    memo = split.__dict__.setdefault("_content_fp", None)  # hashed once per loaded split
    if memo is None:
        memo = split.__dict__["_content_fp"] = content_fingerprint(split.images, split.labels)
    return memo


def key_fields(cell: Cell, s: Any, data: DatasetSplits) -> dict[str, Any]:
    """Everything but the source split that decides the features; ``s`` is the cell's training
    setup (``tlbench.train.setup.Setup``: its model, size, normalisation, device, precision)."""
    import timm

    adapt = s.phases[0].adapt_bn
    return {
        "version": STORE_VERSION,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "dataset": data.name,  # the source's identity is the fingerprint; the name is for `cache ls`
        "backbone": cell.backbone.name,
        "model_kwargs": model_kwargs_for_key(dict(cell.backbone.model_kwargs)),
        "weights": backbone_digest(s.model),
        # AdaBN re-estimates BatchNorm on the cell's own train rows before the probe
        "adapt_bn": {"train": data.notes.get("train_sha1", "own"), "batch": cell.train.batch_size}
        if adapt
        else None,
        "image_size": s.size,
        "mean": list(s.mean),
        "std": list(s.std),
        "transform": TRANSFORM,
        "augmentation": cell.augmentation.name,
        "device": s.device.type,
        # CPU kernels may split work by thread: the count is part of what makes a result bit-exact
        "threads": torch.get_num_threads() if s.device.type == "cpu" else None,
        "precision": "bf16-autocast" if s.autocast else "fp32",
        "channels_last": s.channels_last,
        "eval_batch_size": cell.train.eval_batch_size,
    }


def entry_keys(
    cell: Cell, s: Any, data: DatasetSplits, splits: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, TensorSplit], dict[str, tuple[str, np.ndarray | None]], dict[str, str]]:
    """The key of each source split the cell's ``splits`` are drawn from: (the fields every key
    shares, the source splits, where each of the cell's splits comes from, source -> key)."""
    sources, rows, known = _sources(data)
    fields = key_fields(cell, s, data)
    needed = sorted({rows[k][0] for k in splits})
    keys = {
        src: digest({**fields, "split": src, "source": _fingerprint(sources[src], src, known)})
        for src in needed
    }
    return fields, sources, rows, keys
