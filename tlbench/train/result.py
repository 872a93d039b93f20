"""What training hands back and how it reports along the way.

``fit`` knows nothing of MLflow or Optuna: progress leaves through a ``Reporter`` (``on_start``,
``on_epoch``), so the same loop serves tracking, tuning, progress bars and tests. A reporter may
stop a cell early by raising ``StopTraining`` (a pruned tuning trial).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from tlbench.train.metrics import mean_per_class_acc, per_class_acc
from tlbench.train.state import TrainState


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN/inf: the cell cannot continue (reason ``nonfinite_loss``)."""

    reason = "nonfinite_loss"


class StopTraining(Exception):
    """Raised by a reporter to end a cell early on purpose (e.g. a pruned trial); not a failure."""


class RungReached(Exception):
    """``fit`` reached the epoch it was asked to pause at (a racing rung): its checkpoint holds the
    state to continue from; ``best_val_acc`` is the best validation accuracy so far."""

    def __init__(self, epoch: int, best_val_acc: float, device_s: float):
        super().__init__(f"paused after epoch {epoch} (best val acc {best_val_acc:.4f})")
        self.epoch, self.best_val_acc, self.device_s = epoch, best_val_acc, device_s

    def metrics(self) -> dict[str, float]:
        """What the paused run logs: the value the race decides on and the compute spent so far."""
        return {
            "race_val_acc": self.best_val_acc,
            "epochs_trained": float(self.epoch),
            "device_s": self.device_s,
        }


class Reporter(Protocol):
    """Where ``fit`` sends progress. Every method is optional in spirit: implement as no-ops."""

    def on_start(self, info: dict[str, Any]) -> None: ...

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...


class NullReporter:
    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        pass


class MultiReporter:
    """Fan progress out to several reporters (e.g. MLflow and the progress bar)."""

    def __init__(self, *reporters: Reporter | None):
        self.reporters = [r for r in reporters if r is not None]

    def on_start(self, info: dict[str, Any]) -> None:
        for r in self.reporters:
            r.on_start(info)

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for r in self.reporters:
            r.on_epoch(epoch, metrics)

    def on_epochs(self, epochs: list[tuple[int, dict[str, float]]]) -> None:
        for r in self.reporters:
            report_epochs(r, epochs)


def report_epochs(reporter: Any, epochs: list[tuple[int, dict[str, float]]]) -> None:
    """Several epochs at once (those a checkpoint just made safe): in one write where the
    reporter can (``on_epochs``: MLflow's ``log_batch``), else one ``on_epoch`` each."""
    if not epochs:
        return
    many = getattr(reporter, "on_epochs", None)
    if many is not None:
        many(epochs)
    else:
        for epoch, metrics in epochs:
            reporter.on_epoch(epoch, metrics)


@dataclass
class Result:
    """What a finished cell produced; ``best_state`` is the best-val checkpoint (CPU tensors)."""

    history: list[dict[str, float]]
    best_epoch: int
    best_val_acc: float
    test_loss: float
    test_acc: float
    test_top5: float
    confusion: np.ndarray
    classes: list[str]
    train_time_s: float
    images_per_s: float
    params_trainable: int
    params_total: int
    device: str
    best_state: dict[str, torch.Tensor] = field(repr=False)
    info: dict[str, Any] = field(default_factory=dict)
    device_s: float = 0.0  # wall time the cell held its device, over every attempt (cost accounting)
    # what a run records at its end besides the metrics below: params known only then (an L-BFGS
    # probe's chosen λ), step curves other than the epochs' (``probe.val_acc`` over the λ grid),
    # and warnings (a λ whose solve did not converge): each a number a reader must not miss
    params: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # final metrics of its own (probe.sweep_s)
    warnings: list[str] = field(default_factory=list)

    @property
    def per_class_acc(self) -> np.ndarray:
        return per_class_acc(self.confusion)

    @property
    def test_mean_per_class_acc(self) -> float:
        return mean_per_class_acc(self.confusion)

    def final_metrics(self) -> dict[str, float]:
        best = self.history[self.best_epoch] if 0 <= self.best_epoch < len(self.history) else {}
        return {
            "test_acc": self.test_acc,
            "test_mean_per_class_acc": self.test_mean_per_class_acc,
            "test_top5": self.test_top5,
            "test_loss": self.test_loss,
            "best_val_acc": self.best_val_acc,
            **(
                {"best_val_mean_per_class_acc": best["val_mean_per_class_acc"]}
                if "val_mean_per_class_acc" in best
                else {}
            ),
            "best_epoch": float(self.best_epoch),
            "train_time_s": self.train_time_s,
            "images_per_s": self.images_per_s,
            "params_trainable": float(self.params_trainable),
            "params_total": float(self.params_total),
            "params_trainable_frac": self.params_trainable / max(self.params_total, 1),
            "epochs_trained": float(len(self.history)),
            "device_s": self.device_s,
            **self.metrics,
        }


def finished(
    state: TrainState,
    test: dict[str, Any],
    *,
    classes: list[str],
    total: int,
    device: str,
    info: dict[str, Any],
    **extra: Any,
) -> Result:
    """A cell's ``Result`` from where its training ended (``state``: the history, the selected
    epoch and its weights) and its one test evaluation; ``extra``: params, curves, metrics,
    warnings of its own (an L-BFGS probe's)."""
    assert state.best_state is not None
    return Result(
        history=state.history,
        best_epoch=state.best_epoch,
        best_val_acc=state.history[state.best_epoch]["val_acc"],
        test_loss=test["loss"],
        test_acc=test["acc"],
        test_top5=test["top5"],
        confusion=test["confusion"],
        classes=classes,
        train_time_s=state.train_time,
        images_per_s=state.images_seen / max(state.train_time, 1e-9),
        params_trainable=state.max_trainable,
        params_total=total,
        device=device,
        best_state=state.best_state,
        info=info,
        device_s=state.tick(),
        **extra,
    )
