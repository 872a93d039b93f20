"""Several head-only probe cells trained as one stack, over one read of their shared features.

Cells that look through the same frozen backbone at the same data (one feature-store entry per
source split) and differ in what trains the head (optimizer, lr, weight decay, schedule, label
smoothing, seed) are fit together, as DINOv2's linear evaluation fits its grid of heads: the model
is built and the features read once per seed, each batch of features is gathered once per batch
order, and one backward pass serves every head. Each head keeps what it would have alone: its own
init (its seed's build), optimizer and schedule (``build_optimizer``/``build_scheduler`` on the
head), batch order (its seed's generator), evaluation, history, best epoch, checkpoint and
reporter. The arithmetic of every head is the arithmetic of ``fit`` on that head (the same
modules, losses and optimizer steps on the same tensors), so on the CPU a stacked head ends
bit-identical to the cell trained alone, and its checkpoint resumes either way.

What is shared is timed once and split: ``train_time_s``, ``epoch_time_s`` and ``device_s`` are
each head's share of the stack's. A head that fails (a non-finite loss, a reporter or checkpoint
error) leaves the stack alone; Ctrl-C interrupts every head (the caller marks them KILLED).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from tlbench.catalog.strategies import phases_for
from tlbench.features.keys import entry_keys
from tlbench.train.evaluation import evaluate
from tlbench.train.features import open_store
from tlbench.train.fitting import _start_info
from tlbench.train.freezing import apply_phase
from tlbench.train.loop import EpochTimer, NonFiniteWatch
from tlbench.train.optim import build_optimizer, build_scheduler
from tlbench.train.result import NonFiniteLossError, Reporter, finished, report_epochs
from tlbench.train.setup import Setup, prepare
from tlbench.train.stack_heads import Group, Head, HeadIn, Member, Stack, Unstackable, train_heads
from tlbench.train.state import TrainState, backbone_changed, rng_states, set_rng_states
from tlbench.train.timings import timed

SPLITS = ("train", "val", "test")


def fit_stack(
    members: list[Member],
    *,
    weights_file: Path | None = None,
    device: str | torch.device | None = None,
    progress: Reporter | None = None,
    cudnn_benchmark: bool = True,
) -> list[Any]:
    """Train every member's head; per member its ``Result``, the exception that ended it, or
    ``Unstackable`` (train that one alone with ``fit``). Members checkpointed at different
    epochs (a stack killed between two of its saves) train as separate stacks, one after the other."""
    out: list[Any] = [None] * len(members)
    saved = [m.checkpoint.load() if m.checkpoint is not None else None for m in members]
    parts: dict[int, list[int]] = {}
    for i, ckpt in enumerate(saved):
        parts.setdefault(int(ckpt["epoch"]) if ckpt else 0, []).append(i)
    for idx in parts.values():
        got = _fit_part(
            [members[i] for i in idx],
            [saved[i] for i in idx],
            weights_file,
            device,
            progress,
            cudnn_benchmark,
        )
        for i, r in zip(idx, got, strict=True):
            out[i] = r
    return out


def _fit_part(
    members: list[Member],
    saved: list[dict[str, Any] | None],
    weights_file: Path | None,
    device: str | torch.device | None,
    progress: Reporter | None,
    cudnn_benchmark: bool,
) -> list[Any]:
    """One stack of members at the same epoch: build per seed, read the features, train, test."""
    mark = time.perf_counter()
    try:
        with timed("build"):
            groups, of = _groups(members, weights_file, device, cudnn_benchmark)
        s = groups[0].setup
        with timed("features"):
            s.stored = open_store(members[0].cell, s, members[0].data, enabled=True)
    except Exception as err:  # the build itself failed: every member fails with it, as alone
        return [err] * len(members)
    if s.stored is None:
        return [Unstackable("the feature store is off")] * len(members)
    stack = Stack(s, mark=mark)
    try:
        _check(groups, s)
        out: list[Any] = [Unstackable(g.why) if g.why else None for g in of]
        for m, ckpt, g in zip(members, saved, of, strict=True):
            if not g.why:
                stack.heads.append(_head(stack, m, ckpt, g))
        _resume_orders(saved, of)
        _read_features(groups, stack)
        stack.share_time(stack.heads)
        _start(stack, progress)
        _epochs(stack, progress)
        stack.share_time([h for h in stack.heads if h.error is None])
        results = iter(_results(stack))
        return [r if r is not None else next(results) for r in out]
    finally:
        s.stored.close()


def _groups(
    members: list[Member], weights_file: Path | None, device: Any, cudnn_benchmark: bool
) -> tuple[list[Group], list[Group]]:
    """One build per (seed, data draw): its head init is the one the seed's cell gets alone."""
    groups: dict[tuple[int, int], Group] = {}
    of = []
    for m in members:
        key = (m.cell.train.seed, id(m.data), _build_key(m.cell))
        if key not in groups:
            s = prepare(
                m.cell,
                m.data,
                weights_file=weights_file,
                device=device,
                cache_features=True,
                compile=False,
                cudnn_benchmark=cudnn_benchmark,
            )
            trainable, total = apply_phase(s.model, s.phases[0])
            groups[key] = Group(s, m, trainable, total, s.model.get_classifier())  # type: ignore[operator]
        of.append(groups[key])
    return list(groups.values()), of


def _build_key(cell: Any) -> str:
    """What a cell's build and batches depend on besides its seed and data: equal, one build."""
    t = cell.train
    settings = [t.image_size, t.eval_batch_size, t.amp, t.channels_last, t.batch_size, t.epochs]
    backbone = [cell.backbone.name, cell.backbone.model_kwargs, str(cell.weights), cell.depends_on_id]
    return json.dumps([backbone, cell.augmentation.name, settings, t.head.model_dump()], default=str)


def _check(groups: list[Group], s: Setup) -> None:
    """Every group reads the stack's feature entries (same backbone tensors, data, transform) and
    trains on as many rows; a group that does not is left out (its members train alone). Once
    checked, a group's own build is let go: the stack's model stands for every backbone."""
    lead = groups[0]
    lead.rows, lead.view = s.stored.rows, s.stored
    for g in groups[1:]:
        _, _, g.rows, keys = entry_keys(g.first.cell, g.setup, g.first.data, SPLITS)
        lockstep = [(x.first.cell.train.epochs, x.first.cell.train.batch_size) for x in (g, lead)]
        if keys != s.stored.keys:
            g.why = "its features differ from the stack's (another backbone or data)"
        elif lockstep[0] != lockstep[1]:
            g.why = f"it trains {lockstep[0]} (epochs, batch size), the stack {lockstep[1]}"
        elif len(g.setup.train) != len(s.train):
            g.why = f"its training set has {len(g.setup.train)} rows, the stack's {len(s.train)}"
        else:
            hits = {k: "hit" for k in s.stored.status}  # the stack's first cell read or extracted them
            g.view = dataclasses.replace(s.stored, rows=g.rows, status=hits)
        g.setup.model = g.setup.forward = s.model


def _head(stack: Stack, m: Member, saved: dict[str, Any] | None, g: Group) -> Head:
    """The member's head as its own ``fit`` builds it, continued from its checkpoint if it has one."""
    cfg = m.cell.train
    phase = phases_for(m.cell.strategy.name, m.cell.strategy.params, cfg)[0]
    module = copy.deepcopy(g.head0)
    optimizer = build_optimizer(
        module,
        m.cell.optimizer.name,
        m.cell.optimizer.params,
        lr=phase.lr,
        weight_decay=cfg.weight_decay,
        layer_decay=None,
    )
    scheduler = build_scheduler(
        optimizer, cfg, epochs=phase.epochs, updates_per_epoch=g.setup.steps_per_epoch
    )
    state = TrainState.from_checkpoint(saved) if saved else TrainState()
    state.max_trainable = max(state.max_trainable, g.trainable)
    h = Head(m, g, state, module, optimizer, scheduler, NonFiniteWatch(g.setup.device), phase.epochs)
    h.device_s = state.device_time
    if saved:
        h.updates, h.first, state.saved = state.updates, state.phase_epoch, None
        h.resumed = {"epoch": saved["epoch"], "history": saved["history"]}
        if saved.get("frozen", stack.digest) != stack.digest:  # as ``TrainState.complete`` refuses it
            h.fail(backbone_changed(m.cell.name, saved["frozen"], stack.digest))
            return h
        # a head-only checkpoint holds the head (the backbone is the stack's); a whole one, both
        module.load_state_dict(stack.head_of(saved["model"]))
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        h.best = stack.head_of(saved.get("best_state") or saved["model"])
        state.best_state = stack.full_state(h.best)
    return h


def _resume_orders(saved: list[dict[str, Any] | None], of: list[Group]) -> None:
    """A resumed group's batch order continues where its members' checkpoints left it."""
    done: set[int] = set()
    for ckpt, g in zip(saved, of, strict=True):
        if ckpt is not None and not g.why and id(g) not in done:
            set_rng_states(ckpt["rng"], g.setup.gen, g.setup.aug_gen, g.setup.device)
            done.add(id(g))


def _read_features(groups: list[Group], stack: Stack) -> None:
    """Each group's train, val and test features from the stack's entries (extracted once, by the
    stack's first cell, on a miss); the train and val read counts as training time, as alone."""
    s = stack.setup
    timer = EpochTimer(s.device)
    ready = [g for g in groups if not g.why]
    with timed("features"):
        timer.start()
        for g in ready:
            g.feats = {n: g.view.split(n, s, g.first.cell.train.eval_batch_size) for n in ("train", "val")}
        spent = timer.stop()
        for g in ready:
            g.feats["test"] = g.view.split("test", s, g.first.cell.train.eval_batch_size)
    for h in stack.heads:
        h.state.train_time += spent / len(stack.heads)


def _start(stack: Stack, progress: Reporter | None) -> None:
    """What each run records before its first epoch: what its own ``fit`` would, and the stack."""
    started = False
    for h in stack.heads:
        if h.error is not None:
            continue
        g, m = h.group, h.member
        info = _start_info(g.setup, m.data, g.trainable, g.total, h.resumed, False)
        info.update(g.view.params(), stacked_heads=len(stack.heads))
        with timed("track"):
            try:
                m.reporter.on_start(info)
            except Exception as err:
                h.fail(err)
        if progress is not None and not started:
            with contextlib.suppress(Exception):
                progress.on_start(info)
            started = True


def _epochs(stack: Stack, progress: Reporter | None) -> None:
    """Every epoch: one pass of the stack, then each head evaluated and recorded on its own; as
    alone, the heads are checkpointed every ``TLBENCH_CHECKPOINT_S`` and at the end (together:
    when one is due), each reporting its epochs since after its save. A head that fails leaves
    the others training."""
    if not stack.heads:
        return
    timer = EpochTimer(stack.setup.device)
    epochs = stack.heads[0].epochs
    for phase_epoch in range(stack.heads[0].first, epochs):
        alive = [h for h in stack.heads if h.error is None]
        if not alive:
            return
        with timed("train"):
            timer.start()
            seen = train_heads(alive, alive[0].state.epoch)
            spent = timer.stop()
        for h in alive:
            h.state.train_time += spent / len(alive)
            h.state.images_seen += seen
        trained = [h for h in alive if h.error is None]
        for h in trained:
            _epoch_end(stack, h, seen, spent / len(alive), phase_epoch)
        stack.share_time(alive)
        trained = [h for h in trained if h.error is None]
        due = phase_epoch + 1 == epochs or any(
            h.member.checkpoint and h.member.checkpoint.due() for h in trained
        )
        for h in trained:
            _save_and_report(stack, h, due)
        first = next((h for h in trained if h.error is None), None)
        if progress is not None and first is not None:
            with contextlib.suppress(Exception):  # a display: it never ends a stack's runs
                progress.on_epoch(first.state.epoch - 1, _metrics(first.state))


def _epoch_end(stack: Stack, h: Head, seen: int, share: float, phase_epoch: int) -> None:
    """The head's epoch metrics, as ``fit`` logs them (val on the epochs it validates), and its
    best epoch so far."""
    epoch = h.state.epoch
    train_loss = h.loss_sum.item() / max(seen, 1)
    if not math.isfinite(train_loss):
        h.fail(NonFiniteLossError(f"training loss became {train_loss} in epoch {epoch}"))
        return
    g, m = h.group, h.member
    metrics = {"train_loss": train_loss, "train_acc": h.correct.item() / max(seen, 1)}
    validates = getattr(h.state, "validates", None)  # train.eval_every: not every epoch
    every = getattr(m.cell.train, "eval_every", 1)
    if validates is None or validates(phase_epoch, h.epochs, every, m.cell.train.epochs):
        with timed("eval"):
            kw = g.setup.eval_kw(m.cell, m.data.num_classes)
            val = evaluate(h.module, g.setup.val, features=g.feats["val"], **kw)
        metrics.update(
            val_loss=val["loss"], val_acc=val["acc"], val_mean_per_class_acc=val["mean_per_class_acc"]
        )
    metrics.update(
        lr=h.optimizer.param_groups[0]["lr"], epoch_time_s=share, epoch_images_per_s=seen / max(share, 1e-9)
    )
    with timed("eval"):
        _record(stack, h, metrics)
    h.unreported.append((h.state.epoch - 1, metrics))


def _record(stack: Stack, h: Head, metrics: dict[str, float]) -> None:
    """``TrainState.record`` for a head: its best weights are the stack's one backbone copy and
    this head's best, not a whole model copied per head and epoch."""
    state, select = h.state, h.member.cell.val_metric
    state.history.append({"epoch": float(state.epoch), **metrics})
    if select in metrics and metrics[select] > state.best_acc:  # validated this epoch
        state.best_acc, state.best_epoch = metrics[select], state.epoch
        h.best = {k: v.detach().to("cpu", copy=True) for k, v in h.module.state_dict().items()}
        state.best_state = stack.full_state(h.best)
    state.epoch += 1


def _save_and_report(stack: Stack, h: Head, due: bool) -> None:
    """Checkpoint (head-only: the backbone named by its digest), then report the epochs since
    the last one: an epoch MLflow shows is never lost. Without a checkpoint, report at once."""
    g, m, state = h.group, h.member, h.state
    try:
        if m.checkpoint is not None:
            if not due:
                return
            with timed("checkpoint"), HeadIn(stack, h.module):
                ckpt = state.checkpoint(
                    frozen=stack.digest,
                    phase=0,
                    phase_epoch=state.epoch,
                    updates=h.updates,
                    model=stack.model,
                    optimizer=h.optimizer,
                    scheduler=h.scheduler,
                    rng=rng_states(g.setup.gen, g.setup.aug_gen, g.setup.device),
                )
                m.checkpoint.save(ckpt)
        with timed("track"):
            report_epochs(m.reporter, list(h.unreported))  # one MLflow write for the epochs since
        h.unreported.clear()
    except Exception as err:
        h.fail(err)


def _results(stack: Stack) -> list[Any]:
    """Each head's best epoch on the test features (or the error that ended it)."""
    out: list[Any] = []
    for h in stack.heads:
        if h.error is not None:
            out.append(h.error)
            continue
        g, m = h.group, h.member
        with timed("eval"):
            h.state.device_time = h.device_s  # its share so far, and its own test pass below
            h.state.start_clock()
            h.module.load_state_dict(h.best)
            kw = g.setup.eval_kw(m.cell, m.data.num_classes)
            test = evaluate(h.module, g.setup.test, features=g.feats["test"], **kw)
            info = g.setup.info()
            out.append(
                finished(
                    h.state,
                    test,
                    classes=list(m.data.classes),
                    total=g.total,
                    device=str(g.setup.device),
                    info=info,
                )
            )
    return out


def _metrics(state: TrainState) -> dict[str, float]:
    """The last epoch's metrics, as ``fit`` reports them (its history row without the epoch)."""
    return {k: v for k, v in state.history[-1].items() if k != "epoch"}
