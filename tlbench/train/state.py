"""``TrainState``: where a cell's training stands, and the schema of its per-epoch checkpoint.

Everything needed to continue a cell exactly where it stopped: counters and history, the best
epoch so far, and (in a checkpoint) the model, optimizer, schedule and RNG states of the phase in
progress. Written in one place (``checkpoint``) and read in one place (``from_checkpoint``), so
the schema cannot drift between them. On the CPU a resumed cell ends bit-identical to an
uninterrupted one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn


def rng_states(gen: torch.Generator, aug_gen: torch.Generator, dev: torch.device) -> dict[str, Any]:
    """The random states a resumed cell needs: torch's global one, the order's and augmentation's."""
    states = {"torch": torch.get_rng_state(), "gen": gen.get_state()}
    if aug_gen is not gen:
        states["aug_gen"] = aug_gen.get_state()
    if dev.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(dev)
    return states


def set_rng_states(
    states: dict[str, Any], gen: torch.Generator, aug_gen: torch.Generator, dev: torch.device
) -> None:
    torch.set_rng_state(states["torch"])
    gen.set_state(states["gen"])
    if aug_gen is not gen and "aug_gen" in states:
        aug_gen.set_state(states["aug_gen"])
    if dev.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], dev)


def cpu_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def head_keys(model: nn.Module) -> set[str]:
    """The state-dict keys a head-only phase can change: the classifier's, and BatchNorm's step
    counters (everything else is what ``features.keys.backbone_digest`` covers)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    prefix = next((name for name, m in model.named_modules() if m is head), None)
    return {
        k
        for k in model.state_dict()
        if (prefix is not None and (k == prefix or k.startswith(prefix + ".")))
        or k.endswith("num_batches_tracked")
    }


def backbone_changed(name: str, saved: str, found: str) -> RuntimeError:
    """The error for a head-only checkpoint whose frozen backbone is not the rebuilt one."""
    return RuntimeError(
        f"{name}: its checkpoint was taken over a backbone with digest {saved}, the rebuilt one has "
        f"{found} (its weights changed since); remove the run's checkpoint folder, or run with --force, "
        "to start the cell over"
    )


@dataclass
class TrainState:
    """Progress of one cell across its phases (``epoch`` counts epochs done, all phases)."""

    history: list[dict[str, float]] = field(default_factory=list)
    epoch: int = 0
    best_acc: float = -1.0  # the best value of the metric the cell selects its epoch by
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None
    train_time: float = 0.0
    images_seen: int = 0
    max_trainable: int = 0
    # a resumed cell continues in ``phase`` after ``phase_epoch`` epochs and ``updates`` steps,
    # from the model/optimizer/scheduler/rng states in ``saved`` (applied once, then dropped)
    phase: int = 0
    phase_epoch: int = 0
    updates: int = 0
    saved: dict[str, Any] | None = None
    # wall time on the device over every attempt: ``device_time`` as of the last checkpoint, and
    # this attempt's clock (``tick`` brings it up to date)
    device_time: float = 0.0
    pause_at: int | None = None  # a racing rung: stop after this many epochs (checkpoint kept)
    anchor: dict[str, torch.Tensor] | None = None  # wise_ft's θ₀: the weights after its probe phase
    _clock: tuple[float, float] = (0.0, 0.0)

    def start_clock(self) -> None:
        self._clock = (time.perf_counter(), self.device_time)

    def tick(self) -> float:
        started, base = self._clock
        self.device_time = base + time.perf_counter() - started
        return self.device_time

    def validates(self, phase_epoch: int, phase_epochs: int, every: int, total_epochs: int) -> bool:
        """Is the epoch being trained one that is validated: every ``every``-th of its phase, the
        phase's last, and the one a racing rung pauses after (the race compares at rungs)?"""
        done = self.epoch + 1
        rung = self.pause_at is not None and self.pause_at <= done < total_epochs
        return (phase_epoch + 1) % every == 0 or phase_epoch + 1 == phase_epochs or rung

    def pauses_now(self, total_epochs: int) -> bool:
        """Has the cell reached its rung (and not its last epoch, which finishes it instead)?"""
        return self.pause_at is not None and self.pause_at <= self.epoch < total_epochs

    def record(self, metrics: dict[str, float], model: nn.Module, select: str = "val_acc") -> None:
        """One more epoch: into the history, and its weights kept if its ``select`` metric (the
        cell's ``val_metric``) is the best so far (``best_acc`` holds that value)."""
        self.history.append({"epoch": float(self.epoch), **metrics})
        if select in metrics and metrics[select] > self.best_acc:  # validated this epoch
            self.best_acc, self.best_epoch = metrics[select], self.epoch
            self.best_state = cpu_copy(model)
        self.epoch += 1

    def complete(self, model: nn.Module, name: str) -> None:
        """A head-only checkpoint made whole again with the rebuilt model's frozen backbone, once
        its digest says it is the same backbone (else resuming would train a different cell)."""
        if self.saved is None or "frozen" not in self.saved:
            return
        from tlbench.features.keys import backbone_digest

        found = backbone_digest(model)
        if found != self.saved["frozen"]:
            raise backbone_changed(name, self.saved["frozen"], found)
        whole = cpu_copy(model)
        self.saved["model"] = {**whole, **self.saved["model"]}
        if self.best_state is not None and len(self.best_state) < len(whole):
            self.best_state = {**whole, **self.best_state}

    def resumes(self, phase_index: int) -> bool:
        return self.saved is not None and phase_index == self.phase

    def checkpoint(
        self,
        *,
        phase: int,
        phase_epoch: int,
        updates: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        rng: dict[str, Any],
        frozen: str | None = None,
    ) -> dict[str, Any]:
        """The checkpoint after an epoch (tensors and plain values only: read with weights_only).

        ``frozen``: the phase trains only the head over a frozen backbone whose digest this is;
        the model's (and best epoch's) weights are saved for the head alone, the backbone named by
        the digest (``complete`` puts a rebuilt backbone back under them when resuming)."""
        keep = head_keys(model) if frozen is not None else None
        best = self.best_state
        if keep is not None and best is not None:
            best = {k: v for k, v in best.items() if k in keep}
        return {
            "epoch": self.epoch,
            "phase": phase,
            "phase_epoch": phase_epoch,
            "updates": updates,
            "model": {
                k: v.detach().cpu() for k, v in model.state_dict().items() if keep is None or k in keep
            },
            **({"frozen": frozen} if frozen is not None else {}),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng,
            "history": self.history,
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,
            # the best weights, unless they are the model's current ones (saved above)
            **({"best_state": best} if self.best_epoch != self.epoch - 1 else {}),
            "train_time": self.train_time,
            "images_seen": self.images_seen,
            "max_trainable": self.max_trainable,
            "device_time": self.tick(),
            **({"anchor": self.anchor} if self.anchor is not None else {}),
        }

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> TrainState:
        return cls(
            history=list(ckpt["history"]),
            epoch=int(ckpt["epoch"]),
            best_acc=float(ckpt["best_acc"]),
            best_epoch=int(ckpt["best_epoch"]),
            best_state=ckpt.get("best_state") or ckpt["model"],
            train_time=float(ckpt["train_time"]),
            images_seen=int(ckpt["images_seen"]),
            max_trainable=int(ckpt["max_trainable"]),
            phase=int(ckpt["phase"]),
            phase_epoch=int(ckpt["phase_epoch"]),
            updates=int(ckpt["updates"]),
            device_time=float(ckpt.get("device_time", 0.0)),  # absent before racing (#18)
            saved={k: ckpt[k] for k in ("model", "optimizer", "scheduler", "rng", "frozen") if k in ckpt},
            anchor=ckpt.get("anchor"),
        )
