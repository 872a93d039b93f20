"""The streaming path: image sets too large to hold in memory are decoded batch by batch.

Small and medium sets live as one uint8 tensor on the training device (``base.TensorSplit``).
An ImageFolder tree whose decoded size exceeds the memory budget instead keeps only its file
paths (``base.FileImages``); ``image_batches`` then decodes each batch in DataLoader worker processes,
ahead of the training step, and hands the trainer the same uint8 (B, C, H, W) batches the tensor
path would, so augmentation, training and results do not depend on which path was taken.

``TLBENCH_STREAM``: ``auto`` (default: stream when the decoded set would exceed
``TLBENCH_MEMORY_BUDGET_GB``, by default a quarter of the machine's memory), ``always``, ``never``.
``TLBENCH_LOADER_WORKERS``: decode processes per streamed split (default: up to 8, one per core).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from tlbench.data.base import FileImages as FileImages  # re-exported: it lives in base.py

STREAM_MODES = ("auto", "always", "never")


class _Decoded(torch.utils.data.Dataset):
    def __init__(self, images: FileImages):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images.decode(i)


def loader_workers() -> int:
    env = os.environ.get("TLBENCH_LOADER_WORKERS")
    if env:
        return max(0, int(env))
    return min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def image_batches(
    images: torch.Tensor | FileImages, batches: Sequence[Any], device: torch.device
) -> Iterator[torch.Tensor]:
    """The uint8 pixels of each index batch, in order, on ``device``.

    Tensor-resident images are indexed in place; streamed ones are decoded by DataLoader workers
    a few batches ahead (pinned memory and a non-blocking copy on CUDA).
    """
    if isinstance(images, torch.Tensor):
        for idx in batches:
            yield images[idx]
        return
    n = len(images)
    index_lists = [
        list(range(*idx.indices(n))) if isinstance(idx, slice) else idx.cpu().tolist() for idx in batches
    ]
    workers = loader_workers()
    loader = torch.utils.data.DataLoader(
        _Decoded(images),
        batch_sampler=index_lists,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
    )
    for x in loader:
        yield x.to(device, non_blocking=True)


def memory_budget_bytes() -> int:
    env = os.environ.get("TLBENCH_MEMORY_BUDGET_GB")
    if env:
        return int(float(env) * 2**30)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 * 2**30
    return total // 4


def should_stream(n_images: int, image_size: int) -> bool:
    """Whether a set of ``n_images`` stored at ``image_size`` takes the streaming path."""
    mode = os.environ.get("TLBENCH_STREAM", "auto").lower()
    if mode not in STREAM_MODES:
        raise ValueError(f"TLBENCH_STREAM={mode!r}: valid values are {', '.join(STREAM_MODES)}")
    if mode != "auto":
        return mode == "always"
    return n_images * 3 * image_size * image_size > memory_budget_bytes()
