"""What a study searches: lr (log-uniform) and batch size, with defaults by what trains."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from tlbench.cells import Cell
from tlbench.tune.storage import TuneError

if TYPE_CHECKING:
    import optuna

PRUNERS = ("median", "halving", "hyperband", "none")

# Default lr ranges for SGD, by what trains: a frozen backbone's head tolerates a much higher lr
# than fine-tuning pretrained features. An optimizer's ``tune_lr_factor`` scales them (Adam: 0.01).
LR_RANGES: dict[str, tuple[float, float]] = {
    "head": (1e-3, 1.0),
    "partial": (1e-4, 0.1),
    "all": (1e-4, 0.1),
    "scratch": (1e-3, 0.5),
    # a frozen backbone with few new parameters in it: between the head's range and fine-tuning's
    "bias": (1e-3, 0.5),
    "norm": (1e-3, 0.5),
    "lora": (1e-3, 0.5),
    "prompt": (1e-3, 1.0),
}
BATCH_SIZES: tuple[int, ...] = (32, 64, 128)


def search_space(cell: Cell) -> dict[str, Any]:
    """The cell's ``tune:`` ranges, defaults filled in by strategy and optimizer."""
    from tlbench.catalog.optimizers import OPTIMIZERS
    from tlbench.catalog.strategies import STRATEGIES, phases_for

    info = STRATEGIES.get(cell.strategy.name)
    kind = phases_for(cell.strategy.name, cell.strategy.params, cell.train)[0].trainable
    kind = kind if info.pretrained else "scratch"
    factor = OPTIMIZERS.get(cell.optimizer.name).tune_lr_factor
    low, high = LR_RANGES[kind]
    space = {"lr": (low * factor, high * factor), "batch_size": BATCH_SIZES}
    space.update({k: tuple(v) for k, v in cell.tune.items()})
    return space


def with_hparams(cell: Cell, lr: float, batch_size: int) -> Cell:
    """The same cell (same id) trained with this lr (``lr_scale`` reset) and batch size."""
    train = cell.train.model_copy(update={"lr": float(lr), "lr_scale": 1.0, "batch_size": int(batch_size)})
    return dataclasses.replace(cell, train=train)


def make_pruner(name: str, epochs: int, n_startup_trials: int = 3) -> optuna.pruners.BasePruner:
    """``median`` (default), ``halving`` (successive halving), ``hyperband`` or ``none``."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 2))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise TuneError(f"unknown pruner {name!r} (valid: {', '.join(PRUNERS)})")
