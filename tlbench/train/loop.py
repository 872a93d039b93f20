"""One training epoch: shuffled batches, augmentation on the device, a step per batch.

The only host syncs are at the epoch's end; a NaN/inf loss stops the cell within a step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from tlbench.data import TensorSplit
from tlbench.data.stream import image_batches
from tlbench.train.evaluation import batches
from tlbench.train.result import NonFiniteLossError


class NonFiniteWatch:
    """Stops a cell within a step of its loss turning NaN/inf, without a host sync per step.

    On the CPU the loss is read directly (free). On CUDA each step's finiteness flag is copied to
    pinned host memory asynchronously and read once the copy has landed (``Event.query`` never
    blocks): the cell stops one or two steps late instead of stalling every step.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.flag = torch.zeros((), dtype=torch.bool, pin_memory=True)
            self.event: torch.cuda.Event | None = None

    def bad(self, loss: torch.Tensor) -> bool:
        if not self.cuda:
            return not bool(torch.isfinite(loss.detach()))
        if self.event is not None and self.event.query() and bool(self.flag):
            return True
        if self.event is None or self.event.query():  # the last copy landed: start the next one
            self.flag.copy_(~torch.isfinite(loss.detach()), non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        return False


class EpochTimer:
    """Epoch wall time: CUDA events on a GPU (no host sync mid-epoch), perf_counter on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            self._begin = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            self._begin.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self._end.record()
            self._end.synchronize()
            return self._begin.elapsed_time(self._end) / 1000
        return time.perf_counter() - self._t0


@dataclass
class Step:
    """What one epoch's steps need besides the data: the model (or head), its optimizer and
    schedule, the training transform and generators, and the device settings."""

    forward: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    transform: Any
    gen: torch.Generator
    aug_gen: torch.Generator
    batch_size: int
    label_smoothing: float
    autocast: bool
    channels_last: bool
    watch: NonFiniteWatch
    penalty: Callable[[], torch.Tensor] | None = None  # added to the loss (L2-SP); not in train_loss


def train_one_epoch(
    step: Step, split: TensorSplit, updates: int, epoch: int, features: torch.Tensor | None = None
) -> tuple[dict[str, float], int, int]:
    """Train on every batch of ``split`` once (on its cached ``features``, if given).

    Returns the epoch's train loss and accuracy, the images seen and the updates done so far.
    """
    dev = split.labels.device
    n = len(split)
    perm = torch.randperm(n, generator=step.gen).to(dev)
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen = 0
    index = batches(n, step.batch_size, perm)
    # the pixels of each batch: indexed on the device, or decoded ahead by loader workers
    pixels = iter(()) if features is not None else image_batches(split.images, index, dev)
    for idx in index:
        y = split.labels[idx]
        if features is not None:
            logits = step.forward(features[idx])
        else:
            x = step.transform(next(pixels), step.aug_gen)
            if step.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=step.autocast):
                logits = step.forward(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=step.label_smoothing)
        objective = loss + step.penalty() if step.penalty is not None else loss
        if step.watch.bad(objective):  # before the step: the weights of the last good step stay
            raise NonFiniteLossError(
                f"training loss became non-finite at update {updates + 1} (epoch {epoch})"
            )
        step.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        step.optimizer.step()
        updates += 1
        step.scheduler.step_update(num_updates=updates)
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
    train_loss = loss_sum.item() / max(seen, 1)
    if not math.isfinite(train_loss):
        raise NonFiniteLossError(f"training loss became {train_loss} in epoch {epoch}")
    return {"train_loss": train_loss, "train_acc": correct.item() / max(seen, 1)}, seen, updates
