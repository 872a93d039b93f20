"""A target's frozen features (train and val), through the shared feature store, and the source
classifier's predictions on them: everything a score reads, from one forward pass per split.

The model is built exactly as the target's cell builds it (same weights, size, normalisation,
eval transform, precision), so the store key is the one that cell's probes use: what ``rank``
extracts, a ``linear_probe`` cell later reads, and the other way round. Features are plain
eval-mode pre-logits: no AdaBN, LoRA or prompts (what is ranked is the backbone as it comes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from tlbench.catalog.strategies import Phase
from tlbench.data import TensorSplit, make_augment
from tlbench.features.keys import backbone_digest, entry_keys
from tlbench.features.store import FeatureStore, default_root
from tlbench.models.build import build_model, data_config
from tlbench.models.source_head import source_classifier
from tlbench.rank.targets import Target
from tlbench.train.evaluation import extract_features
from tlbench.train.features import StoredFeatures
from tlbench.train.setup import pick_device, to_device


@dataclass
class TargetFeatures:
    """Float64 features and labels of the target's train and val rows, and the source model's
    softmax over its own classes on the train rows (None, with the reason, where it has none)."""

    train: np.ndarray
    train_labels: np.ndarray
    val: np.ndarray
    val_labels: np.ndarray
    num_classes: int
    source_probs: np.ndarray | None
    source_note: str
    weights_digest: str
    store: str  # hit | extracted (into the store) | partial (the target's rows alone) | off
    seconds: dict[str, float] = field(default_factory=dict)  # build, extract


@dataclass
class _Setup:
    """What the feature store's key and its extraction read of a cell's training setup."""

    model: nn.Module
    device: torch.device
    autocast: bool
    channels_last: bool
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    eval_tf: Any
    phases: list[Phase]


def _setup(target: Target, model: nn.Module, device: torch.device) -> _Setup:
    cfg, cell = target.cell.train, target.cell
    dcfg = data_config(model)
    size = cfg.image_size or int(dcfg["input_size"][-1])
    mean, std = tuple(dcfg["mean"]), tuple(dcfg["std"])
    model.to(device).eval()
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    tf = make_augment(cell.augmentation.name, out_size=size, mean=mean, std=std, train=False)
    plain = Phase("rank", 1, "head", cfg.effective_lr)  # the frozen backbone, no AdaBN
    return _Setup(
        model,
        device,
        bool(device.type == "cuda" and cfg.amp),
        bool(cfg.channels_last),
        size,
        mean,
        std,
        tf,
        [plain],
    )


def _features(target: Target, s: _Setup, data: Any) -> tuple[dict[str, torch.Tensor], str]:
    """Train and val features: from the store (extracting a miss once, under its lock), or
    extracted here when the store is off."""
    bs = target.cell.train.eval_batch_size
    root = default_root(data.origin.root if data.origin else None)
    if root is None:
        out = {}
        for split in ("train", "val"):
            part = to_device(getattr(data, split), s.device)
            out[split] = extract_features(
                s.model, part, s.eval_tf, batch_size=bs, autocast=s.autocast, channels_last=s.channels_last
            )
        return out, "off"
    fields, sources, rows, keys = entry_keys(target.cell, s, data, ("train", "val"))
    stored = StoredFeatures(FeatureStore(root), fields, sources, rows, keys)
    out: dict[str, torch.Tensor] = {}
    partial = False
    try:
        stored.lookup()
        for split in ("train", "val"):
            part = _rows_only(stored, split, s, bs)
            partial |= part is not None
            out[split] = part if part is not None else stored.split(split, s, bs)  # type: ignore[arg-type]
    finally:
        stored.close()
    status = {v for k, v in stored.status.items() if k in stored.tensors} | (
        {"partial"} if partial else set()
    )
    return out, "hit" if status == {"hit"} else "+".join(sorted(status - {"hit"}))


PARTIAL_BELOW = 0.25  # extract only the target's rows when they are under this share of the source
PARTIAL_MIN_SOURCE = 10_000  # ... of a source this large (a small one is cheap to extract whole, and stored)


def _rows_only(stored: StoredFeatures, split: str, s: _Setup, bs: int) -> torch.Tensor | None:
    """A miss whose rows are a small share of their source split (a 2 % subset of a big train
    set) is extracted for those rows alone, not stored: the whole split is what a probe's entry
    needs, and extracting it would cost the ranking many times its own work. None: use the store."""
    src, rows = stored.rows[split]
    source = stored.sources[src]
    if src in stored.tensors or rows is None or not isinstance(source.images, torch.Tensor):
        return None
    if len(source) < PARTIAL_MIN_SOURCE or len(rows) >= PARTIAL_BELOW * len(source):
        return None
    idx = torch.as_tensor(rows, dtype=torch.long)
    part = to_device(TensorSplit(source.images[idx], source.labels[idx]), s.device)
    return extract_features(
        s.model, part, s.eval_tf, batch_size=bs, autocast=s.autocast, channels_last=s.channels_last
    )


def target_features(
    target: Target, data: Any, weights_file: Path | None, *, device: str | None = None, source: bool = True
) -> TargetFeatures:
    """Build the target's backbone, read or extract its features, and (with ``source``) apply the
    source classifier to them."""
    cell = target.cell
    dev = pick_device(device)
    t0 = time.perf_counter()
    torch.manual_seed(cell.train.seed)  # a random init is the cell's own (its seed draws it)
    model = build_model(
        cell.backbone.name,
        num_classes=data.num_classes,
        weights=cell.weights,
        head=cell.train.head,
        model_kwargs=cell.backbone.model_kwargs,
        weights_file=weights_file,
    )
    head, note = (
        source_classifier(model, cell.backbone.name, cell.weights, weights_file, cell.backbone.model_kwargs)
        if source
        else (None, "not asked for")
    )
    s = _setup(target, model, dev)
    built = time.perf_counter() - t0
    feats, status = _features(target, s, data)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    extracted = time.perf_counter() - t0 - built
    probs = None
    if head is not None:
        with torch.no_grad():
            probs = torch.softmax(head.to(dev).float()(feats["train"].float()), dim=1).double().cpu().numpy()
    return TargetFeatures(
        train=feats["train"].double().cpu().numpy(),
        train_labels=data.train.labels.cpu().numpy(),
        val=feats["val"].double().cpu().numpy(),
        val_labels=data.val.labels.cpu().numpy(),
        num_classes=data.num_classes,
        source_probs=probs,
        source_note=note,
        weights_digest=backbone_digest(model),
        store=status,
        seconds={"build": built, "extract": extracted},
    )
