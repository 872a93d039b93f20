"""The pieces of a stack of probe heads (``train.stacked``): its members, their seed groups, each
head's optimizer and progress, what the stack shares, and one epoch's pass over every head.

The pass is ``train_one_epoch`` for many heads at once: each group (one seed, one data draw)
draws its batch order from its own generator, as its cells would alone, and gathers each batch
of features once; every head then runs its own module, loss and optimizer step on it, and one
backward pass computes every head's gradients (the heads share no parameter, so each gradient
is exactly the one its own ``backward`` would give).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from tlbench.cells import Cell
from tlbench.data import DatasetSplits
from tlbench.models.heads import is_head_key
from tlbench.train.checkpoint import Checkpointer
from tlbench.train.evaluation import batches
from tlbench.train.loop import NonFiniteWatch
from tlbench.train.result import NonFiniteLossError, Reporter
from tlbench.train.setup import Setup
from tlbench.train.state import TrainState


class Unstackable(Exception):
    """This cell cannot train in this stack (its features, backbone or training-set size differ
    from the stack's, or the feature store is off): train it alone."""


@dataclass
class Member:
    """One cell of a stack: what its own ``fit`` call would get."""

    cell: Cell
    data: DatasetSplits
    reporter: Reporter
    checkpoint: Checkpointer | None = None


@dataclass
class Group:
    """The members that draw the same rows in the same order (one seed, one data draw): their
    build (the seed's head init, checked against the stack's feature keys), generator, features."""

    setup: Setup
    first: Member
    trainable: int
    total: int
    head0: nn.Module  # the seed's freshly initialised head, copied for each member
    rows: dict[str, Any] = field(default_factory=dict)
    view: Any = None  # train.features.StoredFeatures with this group's rows
    feats: dict[str, torch.Tensor] = field(default_factory=dict)
    why: str = ""  # non-empty: its members cannot join the stack


@dataclass
class Head:
    """One member's head, optimizer, schedule and progress inside the stack."""

    member: Member
    group: Group
    state: TrainState
    module: nn.Module
    optimizer: Any
    scheduler: Any
    watch: NonFiniteWatch
    epochs: int
    updates: int = 0
    first: int = 0
    device_s: float = 0.0
    best: dict[str, torch.Tensor] = field(default_factory=dict)  # the best epoch's head weights (CPU)
    error: BaseException | None = None
    resumed: dict[str, Any] | None = None  # where its checkpoint stood: epoch and history
    unreported: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # since its last save
    loss_sum: Any = None
    correct: Any = None

    def fail(self, err: BaseException) -> None:
        if self.error is None:
            self.error = err


@dataclass
class Stack:
    """What the members of one stack share: the model (the backbone, and the slot each head is
    put in to be checkpointed), its classifier's name, one CPU copy of the backbone, the clock."""

    setup: Setup
    heads: list[Head] = field(default_factory=list)
    mark: float = field(default_factory=time.perf_counter)
    _backbone: dict[str, torch.Tensor] | None = None

    @property
    def model(self) -> nn.Module:
        return self.setup.model

    @property
    def head_name(self) -> str:
        head = self.model.get_classifier()  # type: ignore[operator]
        return next(n for n, mod in self.model.named_modules() if mod is head)

    def full_state(self, head: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The whole model's state (CPU tensors) with ``head`` as its classifier."""
        prefix = (self.head_name,)
        if self._backbone is None:
            self._backbone = {
                k: v.detach().to("cpu", copy=True)
                for k, v in self.model.state_dict().items()
                if not is_head_key(k, prefix)
            }
        cut = len(prefix[0]) + 1
        return {
            k: head[k[cut:]] if is_head_key(k, prefix) else self._backbone[k] for k in self.model.state_dict()
        }

    @property
    def digest(self) -> str:
        """The frozen backbone's digest (its feature-store key's): a head-only checkpoint names it."""
        return self.setup.stored.fields["weights"]

    def head_of(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The classifier's entries of a whole model's state, by the classifier's own names."""
        prefix = (self.head_name,)
        cut = len(prefix[0]) + 1
        return {k[cut:]: v for k, v in state.items() if is_head_key(k, prefix)}

    def share_time(self, heads: list[Head]) -> None:
        """The wall time since the last share, split evenly between the heads that used it (each
        head's ``device_s``; a checkpoint's ``tick`` then reads the share, not the stack's clock)."""
        now = time.perf_counter()
        for h in heads:
            h.device_s += (now - self.mark) / max(len(heads), 1)
            h.state.device_time = h.device_s
            h.state.start_clock()
        self.mark = now


class HeadIn:
    """``model`` with ``module`` in its classifier's place for the block: a head's checkpoint (or
    resume) is its whole model, the shared backbone with this head."""

    def __init__(self, stack: Stack, module: nn.Module):
        self.module = module
        parent, _, self.attr = stack.head_name.rpartition(".")
        self.parent = stack.model.get_submodule(parent) if parent else stack.model

    def __enter__(self) -> None:
        self.old = getattr(self.parent, self.attr)
        setattr(self.parent, self.attr, self.module)

    def __exit__(self, *exc: object) -> None:
        setattr(self.parent, self.attr, self.old)


def train_heads(heads: list[Head], epoch: int) -> int:
    """One epoch of every head (``train_one_epoch``'s steps, head by head, on batches gathered once
    per group); returns the rows each head saw. A head whose loss turns non-finite stops there,
    before its step, and the others go on. What ``train_one_epoch`` does per head and step besides
    the head's own arithmetic (the finiteness check, the loss and accuracy sums) is done once per
    step for all heads, with the same operations on the same values."""
    groups = {id(h.group): h.group for h in heads}
    dev = heads[0].group.setup.device
    n = len(heads[0].group.setup.train)
    order = {
        k: batches(n, g.first.cell.train.batch_size, torch.randperm(n, generator=g.setup.gen).to(dev))
        for k, g in groups.items()
    }
    for h in heads:
        h.module.train()
    sums = torch.zeros(len(heads), device=dev)
    hits = torch.zeros(len(heads), device=dev, dtype=torch.long)
    seen = 0
    for b in range(len(next(iter(order.values())))):
        xy = {
            k: (g.feats["train"][order[k][b]], g.setup.train.labels[order[k][b]]) for k, g in groups.items()
        }
        steps = _forward(heads, xy, epoch)
        if not steps:
            break
        for _, h, *_ in steps:
            h.optimizer.zero_grad(set_to_none=True)
        losses = torch.stack([loss for *_, loss, _ in steps])
        losses.sum().backward()
        for _, h, *_ in steps:
            h.optimizer.step()
            h.updates += 1
            h.scheduler.step_update(num_updates=h.updates)
        y = steps[0][-1]
        at = torch.tensor([i for i, *_ in steps], device=dev)
        sums.index_add_(0, at, losses.detach() * len(y))
        right = torch.stack([logits.detach().argmax(1) == y for *_, logits, _, y in steps]).sum(1)
        hits.index_add_(0, at, right)
        seen += len(y)
    for i, h in enumerate(heads):
        h.loss_sum, h.correct = sums[i], hits[i]
    return seen


def _forward(heads: list[Head], xy: dict[int, tuple[torch.Tensor, torch.Tensor]], epoch: int) -> list[tuple]:
    """Each live head's logits and loss on its group's batch, the heads whose loss is not finite
    failed before their step (on the CPU in one check; on CUDA each head's asynchronous watch)."""
    out = []
    for i, h in enumerate(heads):
        if h.error is None:
            x, y = xy[id(h.group)]
            logits = h.module(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=h.member.cell.train.label_smoothing)
            out.append((i, h, logits, loss, y))
    if not out:
        return out
    if out[0][1].group.setup.device.type == "cpu":
        finite = torch.isfinite(torch.stack([loss.detach() for *_, loss, _ in out])).tolist()
    else:
        finite = [not h.watch.bad(loss) for _, h, _, loss, _ in out]
    for (_, h, *_), ok in zip(out, finite, strict=True):
        if not ok:  # before the step: the weights of the last good step stay
            h.fail(
                NonFiniteLossError(
                    f"training loss became non-finite at update {h.updates + 1} (epoch {epoch})"
                )
            )
    return [s for s, ok in zip(out, finite, strict=True) if ok]
