"""The optimizers a grid may name, their params and defaults, and the schedules (torch-free).

Built by ``tlbench.train.optim`` with timm's factories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tlbench.registry import Registry


class SGDParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    momentum: float = Field(0.9, ge=0, lt=1, description="momentum")
    nesterov: bool = Field(False, description="Nesterov momentum")


class AdamParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    betas: tuple[float, float] = Field((0.9, 0.999), description="the moving averages' coefficients")
    eps: float = Field(1e-8, gt=0, description="added to the denominator")


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
