"""Training one cell: ``setup`` (model, data on the device, phases), ``loop``
(``train_one_epoch``), ``evaluation`` (a model on images or a head on cached features),
``state`` (``TrainState``, the checkpoint's schema), ``fitting`` (``fit``: the phases and epochs
in order) and
``result`` (``Result``, the ``Reporter`` seam, the errors that end a cell)."""

from __future__ import annotations

from tlbench.train.evaluation import adapt_batchnorm, evaluate, extract_features
from tlbench.train.fitting import fit
from tlbench.train.result import (
    MultiReporter,
    NonFiniteLossError,
    Reporter,
    Result,
    RungReached,
    StopTraining,
)
from tlbench.train.setup import can_cache_features, pick_device, seed_everything
from tlbench.train.state import TrainState

__all__ = [
    "MultiReporter",
    "NonFiniteLossError",
    "Reporter",
    "Result",
    "RungReached",
    "StopTraining",
    "TrainState",
    "adapt_batchnorm",
    "can_cache_features",
    "evaluate",
    "extract_features",
    "fit",
    "pick_device",
    "seed_everything",
]
