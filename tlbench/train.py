"""``fit``: train one cell on tensors already in memory and return its ``Result``.

Knows nothing of MLflow or Optuna: progress leaves through a ``Reporter`` (``on_start``,
``on_epoch``), so the same loop serves tracking, tuning and tests. The dataset is a uint8 tensor
moved once to the training device; batches are indexed from it and augmented there, and the only
host syncs are at epoch ends.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tlbench.checkpoint import Checkpointer
from tlbench.data import AUGMENTATIONS, DatasetSplits, TensorSplit, make_augment
from tlbench.data.stream import image_batches, loader_workers
from tlbench.grid import Cell
from tlbench.models import build_model, data_config, trained_settings
from tlbench.optim import build_optimizer, build_scheduler
from tlbench.strategies import STRATEGIES, Phase, apply_phase, phases_for, set_train_mode


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN/inf: the cell cannot continue (reason ``nonfinite_loss``)."""

    reason = "nonfinite_loss"


class _NonFiniteWatch:
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


class Reporter(Protocol):
    """Where ``fit`` sends progress. Every method is optional in spirit: implement as no-ops."""

    def on_start(self, info: dict[str, Any]) -> None: ...

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...


class _NullReporter:
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

    @property
    def per_class_acc(self) -> np.ndarray:
        totals = self.confusion.sum(axis=1)
        return np.divide(np.diag(self.confusion), totals, out=np.zeros(len(totals)), where=totals > 0)

    def final_metrics(self) -> dict[str, float]:
        return {
            "test_acc": self.test_acc,
            "test_top5": self.test_top5,
            "test_loss": self.test_loss,
            "best_val_acc": self.best_val_acc,
            "best_epoch": float(self.best_epoch),
            "train_time_s": self.train_time_s,
            "images_per_s": self.images_per_s,
            "params_trainable": float(self.params_trainable),
            "params_total": float(self.params_total),
        }


def pick_device(requested: str | None = None) -> torch.device:
    if requested and requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _batches(n: int, batch_size: int, perm: torch.Tensor | None) -> list[torch.Tensor | slice]:
    """Index batches; a trailing batch of one sample is dropped (BatchNorm cannot train on it)."""
    out: list[torch.Tensor | slice] = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if perm is not None and stop - start < 2 and start > 0:
            break
        out.append(perm[start:stop] if perm is not None else slice(start, stop))
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: TensorSplit,
    transform: Any,
    *,
    device: torch.device,
    batch_size: int,
    num_classes: int,
    autocast: bool,
    channels_last: bool,
) -> dict[str, Any]:
    """Loss, top-1, top-5 and the confusion matrix of ``model`` on a split (already on device)."""
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    correct5 = torch.zeros((), device=device, dtype=torch.long)
    confusion = torch.zeros(num_classes * num_classes, device=device, dtype=torch.long)
    k = min(5, num_classes)
    batches = _batches(len(split), batch_size, None)
    for idx, pixels in zip(batches, image_batches(split.images, batches, device), strict=True):
        x = transform(pixels, None)
        y = split.labels[idx]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        pred = logits.argmax(1)
        correct += (pred == y).sum()
        correct5 += (logits.topk(k, dim=1).indices == y[:, None]).any(1).sum()
        confusion += torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes)
    n = max(len(split), 1)
    return {
        "loss": loss_sum.item() / n,
        "acc": correct.item() / n,
        "top5": correct5.item() / n,
        "confusion": confusion.view(num_classes, num_classes).cpu().numpy(),
    }


def _to_device(split: TensorSplit, device: torch.device) -> TensorSplit:
    """The whole split on the device; a streamed one moves its labels (pixels come per batch)."""
    images = split.images if split.streamed else split.images.to(device, non_blocking=True)
    return TensorSplit(images, split.labels.to(device, non_blocking=True))


class _EpochTimer:
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


def _rng_states(gen: torch.Generator, aug_gen: torch.Generator, dev: torch.device) -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "gen": gen.get_state()}
    if aug_gen is not gen:
        states["aug_gen"] = aug_gen.get_state()
    if dev.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(dev)
    return states


def _set_rng_states(
    states: dict[str, Any], gen: torch.Generator, aug_gen: torch.Generator, dev: torch.device
) -> None:
    torch.set_rng_state(states["torch"])
    gen.set_state(states["gen"])
    if aug_gen is not gen and "aug_gen" in states:
        aug_gen.set_state(states["aug_gen"])
    if dev.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], dev)


def can_cache_features(cell: Cell, phase: Phase) -> bool:
    """A frozen backbone seen through a deterministic transform gives the same features every
    epoch: compute them once and train the head on them."""
    return phase.trainable == "head" and not AUGMENTATIONS.get(cell.augmentation.name).random


@torch.no_grad()
def extract_features(
    model: nn.Module,
    split: TensorSplit,
    transform: Any,
    *,
    batch_size: int,
    autocast: bool,
    channels_last: bool,
) -> torch.Tensor:
    """Pre-logits features (what the classifier sees) of a whole split, in eval mode."""
    model.eval()
    dev = split.labels.device
    out = []
    batches = _batches(len(split), batch_size, None)
    for pixels in image_batches(split.images, batches, dev):
        x = transform(pixels, None)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
            f = model.forward_head(model.forward_features(x), pre_logits=True)  # type: ignore[operator]
        out.append(f.float().flatten(1))
    return torch.cat(out)


@torch.no_grad()
def adapt_batchnorm(
    model: nn.Module, split: TensorSplit, transform: Any, *, batch_size: int, channels_last: bool
) -> None:
    """Re-estimate every BatchNorm's running statistics on ``split`` (AdaBN, Li et al. 2016):
    the exact average over the split's batches, weights untouched, nothing else in train mode."""
    from torch.nn.modules.batchnorm import _BatchNorm

    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    dev = split.labels.device
    batches = _batches(len(split), batch_size, None)
    for pixels in image_batches(split.images, batches, dev):
        x = transform(pixels, None)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        model(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()


@torch.no_grad()
def _evaluate_head(
    head: nn.Module, feats: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> dict[str, float]:
    head.eval()
    loss_sum = torch.zeros((), device=feats.device, dtype=torch.float64)
    correct = torch.zeros((), device=feats.device, dtype=torch.long)
    for idx in _batches(len(labels), batch_size, None):
        logits = head(feats[idx]).float()
        loss_sum += F.cross_entropy(logits, labels[idx], reduction="sum").double()
        correct += (logits.argmax(1) == labels[idx]).sum()
    n = max(len(labels), 1)
    return {"loss": loss_sum.item() / n, "acc": correct.item() / n}


def fit(
    cell: Cell,
    data: DatasetSplits,
    *,
    weights_file: Path | None = None,
    reporter: Reporter | None = None,
    device: str | torch.device | None = None,
    cache_features: bool = True,
    compile: bool = False,
    cudnn_benchmark: bool = True,
    checkpoint: Checkpointer | None = None,
) -> Result:
    """Train ``cell`` on ``data``; evaluate the best-val checkpoint on test.

    ``cache_features``: head-only phases with a deterministic augmentation train on features
    computed once (several times faster, same result). ``compile``: ``torch.compile`` the model.
    ``checkpoint``: the state is saved there after every epoch, and training resumes from what
    it holds (model, optimizer, schedule, RNG states, history, best so far): on the CPU a resumed
    cell ends exactly as an uninterrupted one.
    """
    rep = reporter or _NullReporter()
    dev = device if isinstance(device, torch.device) else pick_device(device)
    cfg = cell.train
    gen = seed_everything(cfg.seed)
    info = STRATEGIES.get(cell.strategy.name)

    model = build_model(
        cell.backbone.name,
        num_classes=data.num_classes,
        weights=cell.weights
        if info.pretrained
        else cell.weights.model_copy(update={"kind": "none", "value": ""}),
        head=cfg.head,
        model_kwargs=cell.backbone.model_kwargs,
        weights_file=weights_file,
    )
    dcfg = data_config(model)
    size = cfg.image_size or int(dcfg["input_size"][-1])
    mean, std = tuple(dcfg["mean"]), tuple(dcfg["std"])
    train_tf = make_augment(cell.augmentation.name, out_size=size, mean=mean, std=std, train=True)
    eval_tf = make_augment(cell.augmentation.name, out_size=size, mean=mean, std=std, train=False)

    on_cuda = dev.type == "cuda"
    autocast = bool(on_cuda and cfg.amp)
    channels_last = bool(cfg.channels_last)
    if on_cuda:
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.cuda.reset_peak_memory_stats(dev)
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile else model
    # augmentation draws on the training device: no host round-trip per step on a GPU
    aug_gen = gen if dev.type == "cpu" else torch.Generator(device=dev).manual_seed(cfg.seed)

    train_split, val_split, test_split = (_to_device(s, dev) for s in (data.train, data.val, data.test))
    n_train = len(train_split)
    steps_per_epoch = len(_batches(n_train, cfg.batch_size, torch.arange(n_train)))
    phases = phases_for(cell.strategy.name, cell.strategy.params, cfg)
    cached = [cache_features and can_cache_features(cell, p) for p in phases]
    eval_kw = dict(
        device=dev,
        batch_size=cfg.eval_batch_size,
        num_classes=data.num_classes,
        autocast=autocast,
        channels_last=channels_last,
    )

    resume = checkpoint.load() if checkpoint is not None else None
    trainable, total = apply_phase(model, phases[0])
    rep.on_start(
        {
            "device": str(dev),
            "params_trainable": trainable,
            "params_total": total,
            "input_size": size,
            "train_size": n_train,
            "val_size": len(val_split),
            "test_size": len(test_split),
            "num_classes": data.num_classes,
            "phases": ",".join(f"{p.name}:{p.epochs}" for p in phases),
            "feature_cache": ",".join(("cached" if c else "online") for c in cached),
            "data_loading": f"streamed ({loader_workers()} workers)" if data.train.streamed else "tensor",
            "compile": compile,
            **trained_settings(model),
            **(
                {"resumed_from_epoch": int(resume["epoch"]), "resumed_last_epoch": resume["history"][-1]}
                if resume
                else {}
            ),
        }
    )

    history: list[dict[str, float]] = []
    best_acc, best_epoch, best_state = -1.0, -1, None
    max_trainable = trainable
    train_time = 0.0
    images_seen = 0
    epoch = 0
    if resume:
        history, epoch = list(resume["history"]), int(resume["epoch"])
        best_acc, best_epoch = float(resume["best_acc"]), int(resume["best_epoch"])
        best_state = resume.get("best_state") or resume["model"]
        train_time, images_seen = float(resume["train_time"]), int(resume["images_seen"])
        max_trainable = int(resume["max_trainable"])
    timer = _EpochTimer(dev)
    watch = _NonFiniteWatch(dev)
    features: dict[str, torch.Tensor] = {}
    for phase_index, (phase, use_cache) in enumerate(zip(phases, cached, strict=True)):
        if resume and phase_index < resume["phase"]:
            continue  # done before the interruption
        trainable, total = apply_phase(model, phase)
        max_trainable = max(max_trainable, trainable)
        head = model.get_classifier()  # type: ignore[operator]
        optimizer = build_optimizer(
            head if use_cache else model,
            cell.optimizer.name,
            cell.optimizer.params,
            lr=phase.lr,
            weight_decay=cfg.weight_decay,
            layer_decay=None if use_cache else phase.layer_decay,
        )
        scheduler = build_scheduler(optimizer, cfg, epochs=phase.epochs, updates_per_epoch=steps_per_epoch)
        updates, first = 0, 0
        if phase.adapt_bn and not (resume and phase_index == resume["phase"]):
            timer.start()
            adapt_batchnorm(
                model, train_split, eval_tf, batch_size=cfg.batch_size, channels_last=channels_last
            )
            train_time += timer.stop()
        if resume and phase_index == resume["phase"]:
            model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
            scheduler.load_state_dict(resume["scheduler"])
            updates, first = int(resume["updates"]), int(resume["phase_epoch"])
            _set_rng_states(resume["rng"], gen, aug_gen, dev)
            resume = None
        if use_cache and not features:
            timer.start()
            feat_kw = dict(batch_size=cfg.eval_batch_size, autocast=autocast, channels_last=channels_last)
            features = {
                "train": extract_features(model, train_split, eval_tf, **feat_kw),
                "val": extract_features(model, val_split, eval_tf, **feat_kw),
            }
            train_time += timer.stop()  # the one backbone pass counts as training time
        for phase_epoch in range(first, phase.epochs):
            timer.start()
            perm = torch.randperm(n_train, generator=gen).to(dev)
            loss_sum = torch.zeros((), device=dev)
            correct = torch.zeros((), device=dev, dtype=torch.long)
            seen = 0
            if use_cache:
                head.train()
            else:
                set_train_mode(model, phase)
            batches = _batches(n_train, cfg.batch_size, perm)
            # the pixels of each batch: indexed on the device, or decoded ahead by loader workers
            pixels = iter(()) if use_cache else image_batches(train_split.images, batches, dev)
            for idx in batches:
                y = train_split.labels[idx]
                if use_cache:
                    logits = head(features["train"][idx])
                else:
                    x = train_tf(next(pixels), aug_gen)
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                        logits = forward(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                if watch.bad(loss):  # before the step: the weights of the last good step stay
                    raise NonFiniteLossError(
                        f"training loss became non-finite at update {updates + 1} (epoch {epoch})"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                updates += 1
                scheduler.step_update(num_updates=updates)
                loss_sum += loss.detach() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
            epoch_time = timer.stop()
            train_time += epoch_time
            images_seen += seen
            train_loss = loss_sum.item() / max(seen, 1)
            if not math.isfinite(train_loss):
                raise NonFiniteLossError(f"training loss became {train_loss} in epoch {epoch}")
            if use_cache:
                val = _evaluate_head(head, features["val"], val_split.labels, cfg.eval_batch_size)
            else:
                val = evaluate(forward, val_split, eval_tf, **eval_kw)
            metrics = {
                "train_loss": train_loss,
                "train_acc": correct.item() / max(seen, 1),
                "val_loss": val["loss"],
                "val_acc": val["acc"],
                "lr": optimizer.param_groups[0]["lr"],
                "epoch_time_s": epoch_time,
                "epoch_images_per_s": seen / max(epoch_time, 1e-9),
            }
            history.append({"epoch": float(epoch), **metrics})
            if val["acc"] > best_acc:
                best_acc, best_epoch = val["acc"], epoch
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            epoch += 1
            if checkpoint is not None:  # before reporting: an epoch MLflow shows is never lost
                checkpoint.save(
                    {
                        "epoch": epoch,
                        "phase": phase_index,
                        "phase_epoch": phase_epoch + 1,
                        "updates": updates,
                        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": _rng_states(gen, aug_gen, dev),
                        "history": history,
                        "best_acc": best_acc,
                        "best_epoch": best_epoch,
                        # the best weights, unless they are the model's current ones (saved above)
                        **({"best_state": best_state} if best_epoch != epoch - 1 else {}),
                        "train_time": train_time,
                        "images_seen": images_seen,
                        "max_trainable": max_trainable,
                    }
                )
            rep.on_epoch(epoch - 1, metrics)
        features = features if (use_cache and phase.trainable == "head") else {}

    assert best_state is not None
    model.load_state_dict(best_state)
    test = evaluate(model, test_split, eval_tf, **eval_kw)
    extra: dict[str, Any] = {
        "input_size": size,
        "mean": mean,
        "std": std,
        "phases": [p.name for p in phases],
        "feature_cache": cached,
    }
    if on_cuda:
        extra["peak_mem_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return Result(
        history=history,
        best_epoch=best_epoch,
        best_val_acc=best_acc,
        test_loss=test["loss"],
        test_acc=test["acc"],
        test_top5=test["top5"],
        confusion=test["confusion"],
        classes=list(data.classes),
        train_time_s=train_time,
        images_per_s=images_seen / max(train_time, 1e-9),
        params_trainable=max_trainable,
        params_total=total,
        device=str(dev),
        best_state=best_state,
        info=extra,
    )
