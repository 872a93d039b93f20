"""``fit``: train one cell on tensors already in memory and return its ``Result``.

The dataset is a uint8 tensor moved once to the training device; batches are indexed from it and
augmented there. A strategy is a list of phases (``lp_ft``: a probe, then a fine-tune); each
phase gets its own optimizer and schedule; after every epoch the state is checkpointed, then
reported. The best-val epoch's weights are evaluated on test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tlbench.catalog.strategies import Phase, lbfgs_probe, wise_ft_alphas
from tlbench.cells import Cell
from tlbench.data import DatasetSplits
from tlbench.data.stream import loader_workers
from tlbench.features.keys import backbone_digest
from tlbench.models.build import trained_settings
from tlbench.models.lora import merge
from tlbench.train.checkpoint import Checkpointer
from tlbench.train.evaluation import adapt_batchnorm, evaluate
from tlbench.train.features import open_store, split_features
from tlbench.train.freezing import apply_phase, set_train_mode, trained_parts
from tlbench.train.linear_eval import fit_probe, start_params
from tlbench.train.loop import EpochTimer, NonFiniteWatch, Step, train_one_epoch
from tlbench.train.optim import build_optimizer, build_scheduler
from tlbench.train.regularizers import L2SP
from tlbench.train.result import NullReporter, Reporter, Result, RungReached, finished, report_epochs
from tlbench.train.setup import Setup, prepare
from tlbench.train.state import TrainState, cpu_copy, rng_states, set_rng_states
from tlbench.train.timings import timed
from tlbench.train.wise_ft import fit_wise_ft


def fit(
    cell: Cell,
    data: DatasetSplits,
    *,
    weights_file: Path | None = None,
    reporter: Reporter | None = None,
    device: str | torch.device | None = None,
    cache_features: bool = True,
    feature_store: bool = True,
    compile: bool = False,
    cudnn_benchmark: bool = True,
    checkpoint: Checkpointer | None = None,
    pause_at: int | None = None,
) -> Result:
    """Train ``cell`` on ``data``; evaluate the best-val checkpoint on test.

    ``cache_features``: head-only phases with a deterministic augmentation train on features
    computed once (several times faster, same result). ``feature_store``: those features come
    from, or go to, the on-disk store shared by every cell and trial with the same backbone, data and
    transform (``tlbench.features``; ``$TLBENCH_FEATURE_STORE=off`` disables it). ``compile``: ``torch.compile`` the model.
    ``checkpoint``: the state is saved there after every epoch, and training resumes from what
    it holds (model, optimizer, schedule, RNG states, history, best so far): on the CPU a resumed
    cell ends exactly as an uninterrupted one. ``pause_at``: stop after that many epochs with
    ``RungReached`` (a racing rung; the schedule is still the full epochs'), at once if the
    checkpoint is already there.
    """
    rep = reporter or NullReporter()
    saved = checkpoint.load() if checkpoint is not None else None
    state = TrainState.from_checkpoint(saved) if saved else TrainState()
    state.pause_at = pause_at
    state.start_clock()
    if state.pauses_now(cell.train.epochs):  # trained this far before: nothing to train twice
        raise RungReached(state.epoch, state.best_acc, state.device_time)
    with timed("build"):
        s = prepare(
            cell,
            data,
            weights_file=weights_file,
            device=device,
            cache_features=cache_features,
            compile=compile,
            cudnn_benchmark=cudnn_benchmark,
        )
        trainable, total = apply_phase(s.model, s.phases[0])
    state.max_trainable = state.max_trainable or trainable
    if saved:
        state.complete(s.model, cell.name)  # a frozen backbone's checkpoint names it by digest
    with timed("features"):
        s.stored = open_store(cell, s, data, enabled=cache_features and feature_store)
    probe = lbfgs_probe(cell.strategy.name, cell.strategy.params)
    try:
        info = _start_info(s, data, trainable, total, saved, compile)
        if probe is not None:
            info.update(start_params(probe))
        with timed("track"):
            rep.on_start({**info, **(s.stored.params() if s.stored else {})})
        if probe is not None:  # the papers' linear evaluation: one sweep instead of epochs
            with timed("train"):
                return fit_probe(cell, s, data, probe, state, rep, total)
        timer, watch = EpochTimer(s.device), NonFiniteWatch(s.device)
        alphas = wise_ft_alphas(cell.strategy.name, cell.strategy.params)
        for index, phase in enumerate(s.phases):
            if saved and index < state.phase:
                continue  # done before the interruption
            if alphas is not None and index == 1 and state.anchor is None:
                state.anchor = cpu_copy(s.model)  # θ₀: the pretrained backbone with the probe's head
            _run_phase(cell, s, data.num_classes, index, phase, state, rep, checkpoint, timer, watch)
        with timed("eval"):
            if alphas is not None:
                return fit_wise_ft(cell, s, data, alphas, state, total)
            return _result(cell, s, data, state, total)
    finally:
        if s.stored is not None:
            s.stored.close()


def _start_info(
    s: Setup, data: DatasetSplits, trainable: int, total: int, saved: dict[str, Any] | None, compile: bool
) -> dict[str, Any]:
    """What the run records before its first epoch (params, and where a resumed run stood)."""
    return {
        "device": str(s.device),
        "params_trainable": trainable,
        "params_total": total,
        "input_size": s.size,
        "train_size": len(s.train),
        "val_size": len(s.val),
        "test_size": len(s.test),
        "num_classes": data.num_classes,
        "phases": ",".join(f"{p.name}:{p.epochs}" for p in s.phases),
        "feature_cache": ",".join(("cached" if c else "online") for c in s.cached),
        "data_loading": f"streamed ({loader_workers()} workers)" if data.train.streamed else "tensor",
        **data.params(),  # data.splits / val / shots / train_sha1 ...: what was official, carved, drawn
        "compile": compile,
        **trained_settings(s.model),
        **trained_parts(s.model, s.phases),
        **_environment(),
        **({"resumed_from_epoch": int(saved["epoch"]), "resumed_history": saved["history"]} if saved else {}),
    }


def _environment() -> dict[str, Any]:
    """Provenance: what a replicate ran with, so replicates from different setups can be flagged."""
    import timm

    from tlbench.version import __version__

    return {
        "env.torch": torch.__version__,
        "env.timm": timm.__version__,
        "env.tlbench": __version__,
        "env.threads": torch.get_num_threads(),
    }


def _phase_step(cell: Cell, s: Setup, phase: Phase, cached: bool, watch: NonFiniteWatch) -> Step:
    """The phase's optimizer and schedule over what it trains (only the head on cached features)."""
    head = s.model.get_classifier()  # type: ignore[operator]
    cfg = cell.train
    optimizer = build_optimizer(
        head if cached else s.model,
        cell.optimizer.name,
        cell.optimizer.params,
        lr=phase.lr,
        weight_decay=0.0 if phase.l2sp else cfg.weight_decay,  # L2-SP's penalty replaces it
        layer_decay=None if cached else phase.layer_decay,
    )
    return Step(
        forward=head if cached else s.forward,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, epochs=phase.epochs, updates_per_epoch=s.steps_per_epoch),
        transform=s.train_tf,
        gen=s.gen,
        aug_gen=s.aug_gen,
        batch_size=cfg.batch_size,
        label_smoothing=cfg.label_smoothing,
        autocast=s.autocast,
        channels_last=s.channels_last,
        watch=watch,
        penalty=L2SP(s.model, *phase.l2sp) if phase.l2sp else None,
    )


def _features(
    cell: Cell, s: Setup, index: int, timer: EpochTimer, state: TrainState
) -> dict[str, torch.Tensor]:
    """The frozen backbone run once over train and val (the shared store serves the first
    phase's); that pass counts as training time."""
    with timed("features"):
        timer.start()
        out = {split: split_features(cell, s, split, from_store=index == 0) for split in ("train", "val")}
        state.train_time += timer.stop()
    return out


def _run_phase(
    cell: Cell,
    s: Setup,
    num_classes: int,
    index: int,
    phase: Phase,
    state: TrainState,
    rep: Reporter,
    checkpoint: Checkpointer | None,
    timer: EpochTimer,
    watch: NonFiniteWatch,
) -> None:
    trainable, _ = apply_phase(s.model, phase)
    state.max_trainable = max(state.max_trainable, trainable)
    cached = s.cached[index]
    step = _phase_step(cell, s, phase, cached, watch)
    updates, first = 0, 0
    if phase.adapt_bn and not state.resumes(index):
        timer.start()  # counted as training (it updates the model), like the epochs
        adapt_batchnorm(
            s.model, s.train, s.eval_tf, batch_size=cell.train.batch_size, channels_last=s.channels_last
        )
        state.train_time += timer.stop()
    if state.resumes(index):
        saved, state.saved = state.saved, None
        s.model.load_state_dict(saved["model"])  # type: ignore[index]
        step.optimizer.load_state_dict(saved["optimizer"])  # type: ignore[index]
        step.scheduler.load_state_dict(saved["scheduler"])  # type: ignore[index]
        updates, first = state.updates, state.phase_epoch
        set_rng_states(saved["rng"], s.gen, s.aug_gen, s.device)  # type: ignore[index]
    features = _features(cell, s, index, timer, state) if cached else {}
    eval_kw = s.eval_kw(cell, num_classes)
    unreported: list[tuple[int, dict[str, float]]] = []  # epochs done since the last checkpoint
    for phase_epoch in range(first, phase.epochs):
        with timed("train"):
            timer.start()
            if cached:
                step.forward.train()
            else:
                set_train_mode(s.model, phase)
            metrics, seen, updates = train_one_epoch(
                step, s.train, updates, state.epoch, features.get("train")
            )
            epoch_time = timer.stop()
        state.train_time += epoch_time
        state.images_seen += seen
        if state.validates(phase_epoch, phase.epochs, cell.train.eval_every, cell.train.epochs):
            with timed("eval"):
                if cached:
                    val = evaluate(step.forward, s.val, features=features["val"], **eval_kw)
                else:
                    val = evaluate(s.forward, s.val, s.eval_tf, **eval_kw)
            metrics.update(
                val_loss=val["loss"], val_acc=val["acc"], val_mean_per_class_acc=val["mean_per_class_acc"]
            )
        metrics.update(
            lr=step.optimizer.param_groups[0]["lr"],
            epoch_time_s=epoch_time,
            epoch_images_per_s=seen / max(epoch_time, 1e-9),
        )
        with timed("eval"):  # keeping the best epoch's weights is part of selecting it
            state.record(metrics, s.model, cell.val_metric)
        unreported.append((state.epoch - 1, metrics))
        pausing = state.pauses_now(cell.train.epochs)
        if checkpoint is not None:
            # every TLBENCH_CHECKPOINT_S seconds, at a phase's end and at a rung; the epochs since
            # are reported after it, so an epoch MLflow shows is never lost
            if not (checkpoint.due() or pausing or phase_epoch + 1 == phase.epochs):
                continue
            with timed("checkpoint"):
                _save(checkpoint, state, index, phase_epoch, updates, s, step)
        with timed("track"):
            report_epochs(rep, unreported)
        unreported.clear()
        if pausing:
            raise RungReached(state.epoch, state.best_acc, state.tick())


def _save(
    checkpoint: Checkpointer,
    state: TrainState,
    index: int,
    phase_epoch: int,
    updates: int,
    s: Setup,
    step: Step,
) -> None:
    """One epoch's checkpoint; a phase that trains the head on cached features saves the head
    and names the frozen backbone by its digest (it never changes: re-saving it is waste)."""
    head_only = None
    if s.cached[index]:
        if s.frozen_digest is None:
            s.frozen_digest = s.stored.fields["weights"] if s.stored is not None else backbone_digest(s.model)
        head_only = s.frozen_digest
    checkpoint.save(
        state.checkpoint(
            frozen=head_only,
            phase=index,
            phase_epoch=phase_epoch + 1,
            updates=updates,
            model=s.model,
            optimizer=step.optimizer,
            scheduler=step.scheduler,
            rng=rng_states(s.gen, s.aug_gen, s.device),
        )
    )


def _result(cell: Cell, s: Setup, data: DatasetSplits, state: TrainState, total: int) -> Result:
    assert state.best_state is not None
    s.model.load_state_dict(state.best_state)
    if s.adapter is not None:  # LoRA folded into the weights: a plain timm model is tested and saved
        s.model = merge(s.adapter)
        state.best_state = cpu_copy(s.model)
    if s.stored is not None and all(s.cached):  # the backbone never trained: the head on test features
        feats = s.stored.split("test", s, cell.train.eval_batch_size)
        test = evaluate(s.model.get_classifier(), s.test, features=feats, **s.eval_kw(cell, data.num_classes))  # type: ignore[operator]
    else:
        test = evaluate(s.model, s.test, s.eval_tf, **s.eval_kw(cell, data.num_classes))
    return finished(state, test, classes=list(data.classes), total=total, device=str(s.device), info=s.info())
