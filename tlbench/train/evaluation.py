"""Evaluation on a whole split: of a model on images, or of a head on cached features.

The split is already on the device; batches are indexed from it (or decoded ahead by loader
workers when streamed), and everything is summed on the device: one host sync per split.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from tlbench.data import TensorSplit
from tlbench.data.stream import image_batches
from tlbench.train.metrics import confusion, mean_per_class_acc


def batches(n: int, batch_size: int, perm: torch.Tensor | None) -> list[torch.Tensor | slice]:
    """Index batches; a trailing training batch of one sample is dropped (BatchNorm cannot train on it)."""
    out: list[torch.Tensor | slice] = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if perm is not None and stop - start < 2 and start > 0:
            break
        out.append(perm[start:stop] if perm is not None else slice(start, stop))
    return out


def image_inputs(
    split: TensorSplit, transform: Any, index: list[torch.Tensor | slice], *, channels_last: bool
) -> Iterator[torch.Tensor]:
    """The split's images, batch by batch, transformed and in the model's memory format."""
    for pixels in image_batches(split.images, index, split.labels.device):
        x = transform(pixels, None)
        yield x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: TensorSplit,
    transform: Any = None,
    *,
    batch_size: int,
    num_classes: int,
    autocast: bool = False,
    channels_last: bool = False,
    features: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Loss, top-1, top-5, mean per-class accuracy and the confusion matrix of ``model`` on ``split``.

    With ``features`` (the split's pre-logits, cached) ``model`` is the head and sees those
    instead of the images: a frozen backbone's probe is evaluated without running the backbone.
    """
    model.eval()
    dev = split.labels.device
    loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    correct5 = torch.zeros((), device=dev, dtype=torch.long)
    counts = torch.zeros(num_classes, num_classes, device=dev, dtype=torch.long)
    k = min(5, num_classes)
    index = batches(len(split), batch_size, None)
    if features is not None:
        inputs: Iterator[torch.Tensor] = (features[i] for i in index)
    else:
        inputs = image_inputs(split, transform, index, channels_last=channels_last)
    for idx, x in zip(index, inputs, strict=True):
        y = split.labels[idx]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast and features is None):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        pred = logits.argmax(1)
        correct += (pred == y).sum()
        correct5 += (logits.topk(k, dim=1).indices == y[:, None]).any(1).sum()
        counts += confusion(y, pred, num_classes)
    n = max(len(split), 1)
    matrix = counts.cpu().numpy()
    return {
        "loss": loss_sum.item() / n,
        "acc": correct.item() / n,
        "top5": correct5.item() / n,
        "mean_per_class_acc": mean_per_class_acc(matrix),
        "confusion": matrix,
    }


@torch.no_grad()
def extract_features(
    model: nn.Module,
    split: TensorSplit,
    transform: Any,
    *,
    batch_size: int,
    autocast: bool,
    channels_last: bool,
    keep_dtype: bool = False,
) -> torch.Tensor:
    """Pre-logits features (what the classifier sees) of a whole split, in eval mode; float32, or
    with ``keep_dtype`` in the dtype the backbone computed them in (bf16 under CUDA autocast: the
    feature store keeps that, and its ``.float()`` on reading is exactly this function's)."""
    model.eval()
    dev = split.labels.device
    out = []
    index = batches(len(split), batch_size, None)
    for x in image_inputs(split, transform, index, channels_last=channels_last):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
            f = model.forward_head(model.forward_features(x), pre_logits=True)  # type: ignore[operator]
        out.append((f if keep_dtype else f.float()).flatten(1))
    return torch.cat(out)


@torch.no_grad()
def adapt_batchnorm(
    model: nn.Module, split: TensorSplit, transform: Any, *, batch_size: int, channels_last: bool
) -> None:
    """Re-estimate every BatchNorm's running statistics on ``split`` (AdaBN, Li et al. 2016):
    the exact average over the split's batches, weights untouched, nothing else in train mode."""
    from torch.nn.modules.batchnorm import _BatchNorm

    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    # batches as in training: a trailing batch of one image is left out (no batch statistics)
    index = batches(len(split), batch_size, torch.arange(len(split), device=split.labels.device))
    for x in image_inputs(split, transform, index, channels_last=channels_last):
        model(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()
