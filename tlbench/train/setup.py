"""Everything a cell's training needs before its first step, built once.

The model with its weights and new head, the input size and normalisation from timm's data
config, the augmentations, the device placement (bf16 autocast, channels_last,
``cudnn.benchmark`` on CUDA), the splits on the device, the seeded generators and the phases.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from tlbench.catalog.strategies import STRATEGIES, Phase, phases_for
from tlbench.cells import Cell
from tlbench.data import AUGMENTATIONS, DatasetSplits, TensorSplit, make_augment
from tlbench.models.build import add_strategy_modules, build_model, data_config
from tlbench.train.evaluation import batches
from tlbench.train.resources import peak_rss_mb, reset_peak_rss


def pick_device(requested: str | None = None) -> torch.device:
    if requested and requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def can_cache_features(cell: Cell, phase: Phase) -> bool:
    """A frozen backbone seen through a deterministic transform gives the same features every
    epoch: compute them once and train the head on them."""
    return phase.trainable == "head" and not AUGMENTATIONS.get(cell.augmentation.name).random


def to_device(split: TensorSplit, device: torch.device) -> TensorSplit:
    """The whole split on the device; a streamed one moves its labels (pixels come per batch)."""
    images = split.images if split.streamed else split.images.to(device, non_blocking=True)
    return TensorSplit(images, split.labels.to(device, non_blocking=True))


@dataclass
class Setup:
    model: nn.Module
    forward: nn.Module  # the model, or its torch.compile'd wrapper
    device: torch.device
    autocast: bool
    channels_last: bool
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_tf: Any
    eval_tf: Any
    gen: torch.Generator
    aug_gen: torch.Generator
    train: TensorSplit
    val: TensorSplit
    test: TensorSplit
    phases: list[Phase]
    cached: list[bool]  # per phase: trains the head on features computed once
    steps_per_epoch: int
    stored: Any = None  # train.features.StoredFeatures: the shared feature store, when used
    adapter: Any = None  # peft's LoRA tuner (models.lora), merged into the model at the end
    frozen_digest: str | None = None  # the frozen backbone's digest, once a head-only checkpoint needs it

    def info(self) -> dict[str, Any]:
        """What a cell's ``Result`` records of its setup (and its peak memory on CUDA)."""
        out: dict[str, Any] = {
            "input_size": self.size,
            "mean": self.mean,
            "std": self.std,
            "phases": [p.name for p in self.phases],
            "feature_cache": self.cached,
        }
        if self.device.type == "cuda":
            out["peak_mem_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        out["peak_rss_mb"] = peak_rss_mb()
        return out

    def eval_kw(self, cell: Cell, num_classes: int) -> dict[str, Any]:
        return dict(
            batch_size=cell.train.eval_batch_size,
            num_classes=num_classes,
            autocast=self.autocast,
            channels_last=self.channels_last,
        )


def _build(cell: Cell, num_classes: int, weights_file: Path | None) -> nn.Module:
    pretrained = STRATEGIES.get(cell.strategy.name).pretrained
    return build_model(
        cell.backbone.name,
        num_classes=num_classes,
        weights=cell.weights if pretrained else cell.weights.model_copy(update={"kind": "none", "value": ""}),
        head=cell.train.head,
        model_kwargs=cell.backbone.model_kwargs,
        weights_file=weights_file,
    )


def prepare(
    cell: Cell,
    data: DatasetSplits,
    *,
    weights_file: Path | None,
    device: str | torch.device | None,
    cache_features: bool,
    compile: bool,
    cudnn_benchmark: bool,
) -> Setup:
    """Seed, build, place and split: the order of random draws is part of a cell's result."""
    dev = device if isinstance(device, torch.device) else pick_device(device)
    cfg = cell.train
    gen = seed_everything(cfg.seed)
    reset_peak_rss()
    model = _build(cell, data.num_classes, weights_file)
    phases = phases_for(cell.strategy.name, cell.strategy.params, cfg)
    adapter = add_strategy_modules(model, phases, cell.backbone.name)
    dcfg = data_config(model)
    size = cfg.image_size or int(dcfg["input_size"][-1])
    mean, std = tuple(dcfg["mean"]), tuple(dcfg["std"])
    on_cuda = dev.type == "cuda"
    if on_cuda:
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.cuda.reset_peak_memory_stats(dev)
    model.to(dev)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
        if adapter is not None:  # peft's DoRA views its conv weights as matrices: keep them contiguous
            for name, p in model.named_parameters():
                if ".lora_" in name:
                    p.data = p.data.contiguous()
    # augmentation draws on the training device: no host round-trip per step on a GPU
    aug_gen = gen if dev.type == "cpu" else torch.Generator(device=dev).manual_seed(cfg.seed)
    train, val, test = (to_device(s, dev) for s in (data.train, data.val, data.test))
    return Setup(
        model=model,
        forward=torch.compile(model) if compile else model,
        device=dev,
        autocast=bool(on_cuda and cfg.amp),
        channels_last=bool(cfg.channels_last),
        size=size,
        mean=mean,
        std=std,
        train_tf=make_augment(cell.augmentation.name, out_size=size, mean=mean, std=std, train=True),
        eval_tf=make_augment(cell.augmentation.name, out_size=size, mean=mean, std=std, train=False),
        gen=gen,
        aug_gen=aug_gen,
        train=train,
        val=val,
        test=test,
        phases=phases,
        # an L-BFGS probe is fit on features whatever --no-feature-cache says (it has no other way)
        cached=[(cache_features or p.solver == "lbfgs") and can_cache_features(cell, p) for p in phases],
        steps_per_epoch=len(batches(len(train), cfg.batch_size, torch.arange(len(train)))),
        adapter=adapter,
    )
