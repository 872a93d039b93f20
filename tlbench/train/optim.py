"""Optimizers and learning-rate schedules, built with timm's factories.

``create_optimizer_v2`` gives weight-decay-free bias/norm groups, skips frozen parameters and
implements layer-wise lr decay through the model's ``group_matcher``; ``create_scheduler_v2``
gives warmup + step/cosine schedules stepped per update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tlbench.catalog.optimizers import OPTIMIZERS

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from tlbench.spec import TrainConfig


def build_optimizer(
    model: nn.Module,
    name: str,
    params: dict[str, Any],
    *,
    lr: float,
    weight_decay: float,
    layer_decay: float | None,
) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    kwargs = OPTIMIZERS.get(name).timm_kwargs(params)
    return create_optimizer_v2(model, lr=lr, weight_decay=weight_decay, layer_decay=layer_decay, **kwargs)


def build_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainConfig, *, epochs: int, updates_per_epoch: int
) -> Any:
    """A timm scheduler stepped per update (``step_update``); ``constant`` is a step schedule with no decay."""
    from timm.scheduler import create_scheduler_v2

    sched = {"constant": "step", "step": "step", "cosine": "cosine"}[train.schedule]
    warmup = min(train.warmup_epochs, max(epochs - 1, 0))
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=sched,
        num_epochs=epochs,
        decay_epochs=train.step_size if train.schedule == "step" else epochs + 1,
        decay_rate=train.gamma if train.schedule == "step" else 1.0,
        min_lr=train.min_lr,
        warmup_epochs=warmup,
        warmup_lr=min(1e-5, optimizer.param_groups[0]["lr"] * 0.01) if warmup else 0.0,
        step_on_epochs=False,
        updates_per_epoch=max(1, updates_per_epoch),
    )
    return scheduler
