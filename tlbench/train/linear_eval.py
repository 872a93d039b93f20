"""A ``linear_probe`` cell with ``solver: lbfgs``: the papers' linear evaluation, end to end.

The frozen backbone's pre-logits features of train, val and test (from the feature store, or
extracted once), an L2-regularised logistic regression solved for every λ of the grid
(``tlbench.train.logreg``), λ chosen on val by the cell's metric, the refit on train + val at
it, and test evaluated once with the head the refit gave. There are no epochs: the whole sweep is
the cell's one pass (its history has one entry, what racing sees as its only rung).

What the run records: param ``probe.l2`` (the chosen λ) and ``probe.l2_grid``; step metrics over
the grid's index (ascending λ) ``probe.val_acc``, ``probe.val_mean_per_class_acc``,
``probe.val_loss``, ``probe.train_loss``, ``probe.iterations`` and ``probe.grad_norm``; the
refit's iterations and gradient; ``probe.sweep_s``. A λ whose solve did not converge is a
warning (tag ``tlbench.warnings``, and on the console), never a silent number.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from tlbench.catalog.strategy_params import LinearProbeParams
from tlbench.cells import Cell
from tlbench.data import DatasetSplits
from tlbench.train import logreg
from tlbench.train.evaluation import evaluate
from tlbench.train.features import split_features
from tlbench.train.loop import EpochTimer
from tlbench.train.result import Reporter, Result, finished
from tlbench.train.setup import Setup
from tlbench.train.state import TrainState


def start_params(probe: LinearProbeParams) -> dict[str, Any]:
    """What the run records before the sweep: the grid as solved, and how."""
    grid = logreg.check_grid(probe.l2 or logreg.DEFAULT_GRID)
    return {
        "probe.solver": "lbfgs",
        "probe.l2_grid": ",".join(f"{v:.6g}" for v in grid),
        "probe.refit": probe.refit,
        "probe.max_iter": probe.max_iter,
        "probe.tol": probe.tol,
        "probe.precision": str(logreg.DTYPE).removeprefix("torch."),
        "probe.path": "warm-started from the strongest l2 to the weakest",
    }


def _warnings(sweep: logreg.Sweep, probe: LinearProbeParams) -> list[str]:
    chosen = sweep.solutions[sweep.chosen].l2
    out = []
    for sol in [*sweep.solutions, *([sweep.refit] if sweep.refit else [])]:
        if sol.converged:
            continue
        which = " (the refit)" if sol is sweep.refit else " (the chosen l2)" if sol.l2 == chosen else ""
        out.append(
            f"L-BFGS did not converge at l2 = {sol.l2:.3g}{which}: max_iter {probe.max_iter} reached "
            f"with max |gradient| {sol.grad_norm:.3g} > {sol.threshold:.3g} (tol {probe.tol:g} x its "
            "value at W = 0); raise max_iter, or leave that l2 out if it is never chosen"
        )
    return out


def _what_the_run_records(
    sweep: logreg.Sweep, n_train: int, notes: list[str], solved: float
) -> dict[str, Any]:
    """The Result's params, curves over the grid's index and final metrics of its own."""
    chosen = sweep.solutions[sweep.chosen]
    metrics: dict[str, float] = {"probe.sweep_s": solved, "probe.not_converged": float(len(notes))}
    if sweep.refit is not None:
        metrics["probe.refit_iterations"] = float(sweep.refit.iterations)
        metrics["probe.refit_grad_norm"] = sweep.refit.grad_norm
    return {
        "params": {"probe.l2": f"{chosen.l2:.6g}", "probe.C": f"{1 / (chosen.l2 * n_train):.6g}"},
        "curves": {
            "probe.val_acc": [v.acc for v in sweep.val],
            "probe.val_mean_per_class_acc": [v.mean_per_class_acc for v in sweep.val],
            "probe.val_loss": [v.loss for v in sweep.val],
            "probe.train_objective": [sol.loss for sol in sweep.solutions],
            "probe.iterations": [float(sol.iterations) for sol in sweep.solutions],
            "probe.grad_norm": [sol.grad_norm for sol in sweep.solutions],
        },
        "metrics": metrics,
        "warnings": notes,
    }


def _the_pass(
    s: Setup,
    num_classes: int,
    feats: dict[str, torch.Tensor],
    sweep: logreg.Sweep,
    seconds: float,
) -> dict[str, float]:
    """The cell's one 'epoch' as the history and the reporter see it: the chosen λ's numbers."""
    chosen, val = sweep.solutions[sweep.chosen], sweep.val[sweep.chosen]
    train = logreg.score(feats["train"].to(logreg.DTYPE), s.train.labels, num_classes, chosen)
    rows = len(s.train) + len(s.val)
    return {
        "train_loss": train.loss,
        "train_acc": train.acc,
        "val_loss": val.loss,
        "val_acc": val.acc,
        "val_mean_per_class_acc": val.mean_per_class_acc,
        "epoch_time_s": seconds,
        "epoch_images_per_s": rows / max(seconds, 1e-9),
    }


def fit_probe(
    cell: Cell,
    s: Setup,
    data: DatasetSplits,
    probe: LinearProbeParams,
    state: TrainState,
    rep: Reporter,
    total: int,
) -> Result:
    """The sweep, the head it chose written into the model, test once: the cell's ``Result``."""
    timer = EpochTimer(s.device)
    timer.start()
    feats = {split: split_features(cell, s, split) for split in ("train", "val", "test")}
    extracted = timer.stop()
    timer.start()
    sweep = logreg.sweep(
        (feats["train"], s.train.labels),
        (feats["val"], s.val.labels),
        data.num_classes,
        probe.l2 or logreg.DEFAULT_GRID,
        metric=cell.metric,
        refit=probe.refit,
        max_iter=probe.max_iter,
        tol=probe.tol,
    )
    solved = timer.stop()
    head = s.model.get_classifier()  # type: ignore[operator]
    with torch.no_grad():  # a linear head (checked at expansion): the refit's W and b, as float32
        head.weight.copy_(sweep.final.weight)
        head.bias.copy_(sweep.final.bias)
    metrics = _the_pass(s, data.num_classes, feats, sweep, extracted + solved)
    state.train_time += extracted + solved
    state.images_seen += len(s.train) + len(s.val)
    state.record(metrics, s.model, cell.val_metric)  # best_val_* = the chosen λ's, before the refit
    rep.on_epoch(0, metrics)
    test = evaluate(head, s.test, features=feats["test"], **s.eval_kw(cell, data.num_classes))
    notes = _warnings(sweep, probe)
    for note in notes:
        warnings.warn(f"{cell.name}: {note}", stacklevel=2)
    return finished(
        state,
        test,
        classes=list(data.classes),
        total=total,
        device=str(s.device),
        info=s.info(),
        **_what_the_run_records(sweep, len(s.train), notes, solved),
    )
