"""``Cell``: one experiment of a grid, fully resolved, as every later stage sees it (torch-free).

Made by ``tlbench.cells.expansion``; its ``id`` is the hash of what determines its result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tlbench.spec import (
    AugmentationEntry,
    BackboneEntry,
    DatasetEntry,
    OptimizerEntry,
    StrategyEntry,
    TrainConfig,
    WeightsSpec,
)


@dataclass(frozen=True)
class Cell:
    """One experiment: a dataset, backbone, strategy, optimizer and augmentation with settings."""

    grid: str
    block: str
    dataset: DatasetEntry
    backbone: BackboneEntry
    strategy: StrategyEntry
    optimizer: OptimizerEntry
    augmentation: AugmentationEntry
    weights: WeightsSpec
    train: TrainConfig
    labels: dict[str, str] = field(hash=False)
    name: str = ""
    id: str = ""
    depends_on: str | None = None  # name of the cell whose checkpoint initialises this one
    depends_on_id: str | None = None
    config_id: str = ""  # the configuration: its content at the base seed (== id if not replicated)
    config_name: str = ""  # the name without @sSEED
    replicate: int | None = None  # this cell's seed when its configuration has ``seeds:``
    reported: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)  # not part of the id
    tune: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)  # search space, not the id
    metric: str = "acc"  # what the cell is selected (best epoch, λ) and ranked by: part of the id unless acc
    # settings the cell's strategy does not use (an L-BFGS probe: optimizer, lr, epochs, ...), as
    # the grid gave them: recorded, left out of the id
    ignored: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def val_metric(self) -> str:
        """The per-epoch metric the cell's best epoch (and racing, and tuning) is chosen by."""
        return f"val_{self.metric}"

    def axis_values(self) -> dict[str, str]:
        """Axis -> label, e.g. {'dataset': 'digits', 'backbone': 'test_resnet', ...}."""
        return dict(self.labels)

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved cell, as written to the run's ``cell.yaml`` artifact."""
        return {
            "name": self.name,
            "id": self.id,
            "grid": self.grid,
            "block": self.block,
            "dataset": {
                "name": self.dataset.name,
                "label": self.labels["dataset"],
                "params": self.dataset.params,
            },
            "backbone": {
                "name": self.backbone.name,
                "label": self.labels["backbone"],
                "weights": str(self.weights),
                "model_kwargs": self.backbone.model_kwargs,
            },
            "strategy": {
                "name": self.strategy.name,
                "label": self.labels["strategy"],
                "params": self.strategy.params,
            },
            "optimizer": {
                "name": self.optimizer.name,
                "label": self.labels["optimizer"],
                "params": self.optimizer.params,
            },
            "augmentation": {"name": self.augmentation.name, "label": self.labels["augmentation"]},
            "train": self.train.model_dump(mode="json"),
            "depends_on": self.depends_on,
            "config_id": self.config_id,
            "replicate": self.replicate,
            "metric": self.metric,
            **({"ignored": self.ignored} if self.ignored else {}),
        }

    def flat_params(self) -> dict[str, str]:
        """Every axis value and setting as flat string params (same keys across cells, for MLflow)."""
        out: dict[str, Any] = {
            "dataset": self.labels["dataset"],
            "backbone": self.labels["backbone"],
            "strategy": self.labels["strategy"],
            "optimizer": self.labels["optimizer"],
            "augmentation": self.labels["augmentation"],
            "dataset.name": self.dataset.name,
            "backbone.name": self.backbone.name,
            "backbone.weights": str(self.weights),
            "strategy.name": self.strategy.name,
            "optimizer.name": self.optimizer.name,
            "augmentation.name": self.augmentation.name,
            "block": self.block,
        }
        for prefix, params in (
            ("dataset", self.dataset.params),
            ("strategy", self.strategy.params),
            ("optimizer", self.optimizer.params),
            ("backbone", self.backbone.model_kwargs),
        ):
            for k, v in params.items():
                out[f"{prefix}.{k}"] = v
        for k, v in self.train.model_dump(mode="json").items():
            if k == "head":
                out["head"] = v["type"]
                out["head.hidden"] = ",".join(map(str, v["hidden"]))
                out["head.dropout"] = v["dropout"]
                out["head.init"] = v["init"]
            else:
                out[k] = v
        out["effective_lr"] = self.train.effective_lr
        out["metric"] = self.metric
        if self.ignored:
            out["ignored"] = ",".join(f"{k}={v}" for k, v in self.ignored.items())
        return {k: ("" if v is None else str(v)) for k, v in out.items()}
