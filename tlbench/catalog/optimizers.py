"""Optimizers and learning-rate schedules, built with timm's factories.

``create_optimizer_v2`` gives weight-decay-free bias/norm groups, skips frozen parameters and
implements layer-wise lr decay through the model's ``group_matcher``; ``create_scheduler_v2``
gives warmup + step/cosine schedules stepped per update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from tlbench.registry import Registry

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from tlbench.spec import TrainConfig


class SGDParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False


class AdamParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)


@dataclass(frozen=True)
class OptimizerInfo:
    name: str
    description: str
    params: type[BaseModel]
    tune_lr_factor: float = 1.0  # its useful lrs relative to SGD's: scales `tlbench tune`'s default range

    def timm_kwargs(self, params: dict[str, Any]) -> dict[str, Any]:
        """timm's optimizer name and keyword arguments for these params."""
        p = self.params.model_validate(params)
        if isinstance(p, SGDParams):
            # timm: 'sgd'/'nesterov' = SGD with Nesterov, 'momentum' = plain momentum SGD
            return {"opt": "sgd" if p.nesterov else "momentum", "momentum": p.momentum}
        assert isinstance(p, AdamParams)
        return {"opt": self.name, "betas": tuple(p.betas), "eps": p.eps}


OPTIMIZERS: Registry[OptimizerInfo] = Registry("optimizer")
OPTIMIZERS.register(
    "sgd", OptimizerInfo("sgd", "SGD with momentum (nesterov optional), as in the seeds", SGDParams)
)
OPTIMIZERS.register("adam", OptimizerInfo("adam", "Adam (L2 weight decay)", AdamParams, 0.01))
OPTIMIZERS.register("adamw", OptimizerInfo("adamw", "AdamW (decoupled weight decay)", AdamParams, 0.01))

SCHEDULES = ("constant", "step", "cosine")


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
