"""Helpers shared by the perf scripts: build a cell from a few settings, time things fairly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from tlbench.cells import Cell, expand
from tlbench.spec import parse_grid


def make_cell(
    *,
    dataset: str = "synthetic",
    params: dict[str, Any] | None = None,
    backbone: str = "test_resnet",
    strategy: str = "scratch",
    augmentation: str = "basic",
    optimizer: str = "sgd",
    **train: Any,
) -> Cell:
    raw = {
        "name": "perf",
        "train": {"epochs": 3, "batch_size": 128, "lr": 0.05, "seed": 0, **train},
        "datasets": [{"name": dataset, "params": params or {}}],
        "backbones": [{"name": backbone, "weights": "none"}],
        "strategies": [strategy],
        "optimizers": [optimizer],
        "augmentations": [augmentation],
    }
    return expand(parse_grid(raw, check_backbones=False))[0]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import os

    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
