"""WiSE-FT (Wortsman et al. 2022): interpolate between the probe's weights and the fine-tuned ones.

``θ(α) = (1 − α)·θ₀ + α·θ_ft``: θ₀ is the model after ``lp_ft``'s probe phase (the pretrained
backbone with the probe's head, kept in the cell's checkpoint from then on), θ_ft its selected
fine-tuned weights. Nothing trains: each α is evaluated on val (and test, for the curve), the α
best on val by the cell's metric is the result (ties: the first in ``alphas``). BatchNorm's
running statistics are not weights to average: for 0 < α < 1 they are re-estimated on the train
split at that α (AdaBN's exact pass); α = 0 and α = 1 keep θ₀'s and θ_ft's own, so α = 1 is the
fine-tune and α = 0 the probe exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from tlbench.cells import Cell
from tlbench.data import DatasetSplits
from tlbench.train.evaluation import adapt_batchnorm, evaluate
from tlbench.train.result import Result, finished
from tlbench.train.setup import Setup
from tlbench.train.state import TrainState, cpu_copy


def mix(
    theta0: dict[str, torch.Tensor], theta1: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """θ(α) for every floating tensor (``lerp`` is exact at 0 and 1); counters
    (``num_batches_tracked``) are θ₀'s at α = 0, else θ_ft's."""
    counters = theta0 if alpha == 0 else theta1
    return {
        k: torch.lerp(theta0[k], v, alpha) if v.is_floating_point() else counters[k].clone()
        for k, v in theta1.items()
    }


def fit_wise_ft(
    cell: Cell, s: Setup, data: DatasetSplits, alphas: tuple[float, ...], state: TrainState, total: int
) -> Result:
    """Every α evaluated, the best on val tested: the cell's ``Result`` (its weights θ(α*))."""
    assert state.anchor is not None and state.best_state is not None
    theta0, theta1 = state.anchor, state.best_state
    has_bn = any(isinstance(m, _BatchNorm) and m.track_running_stats for m in s.model.modules())
    kw = s.eval_kw(cell, data.num_classes)
    key = cell.val_metric.removeprefix("val_")
    curves: dict[str, list[float]] = {
        f"wise_ft.{m}": [] for m in ("val_acc", "val_mean_per_class_acc", "test_acc")
    }
    best: tuple[float, int, dict[str, Any], dict[str, torch.Tensor]] | None = None
    for i, alpha in enumerate(alphas):
        s.model.load_state_dict(mix(theta0, theta1, alpha))
        if has_bn and 0 < alpha < 1:
            adapt_batchnorm(
                s.model, s.train, s.eval_tf, batch_size=cell.train.batch_size, channels_last=s.channels_last
            )
        val = evaluate(s.model, s.val, s.eval_tf, **kw)
        test = evaluate(s.model, s.test, s.eval_tf, **kw)
        curves["wise_ft.val_acc"].append(val["acc"])
        curves["wise_ft.val_mean_per_class_acc"].append(val["mean_per_class_acc"])
        curves["wise_ft.test_acc"].append(test["acc"])
        if best is None or val[key] > best[0]:
            best = (val[key], i, test, cpu_copy(s.model))
    assert best is not None
    _, chosen, test, weights = best
    s.model.load_state_dict(weights)
    state.best_state = weights
    result = finished(
        state,
        test,
        classes=list(data.classes),
        total=total,
        device=str(s.device),
        info=s.info(),
        params={
            "wise_ft.alpha": alphas[chosen],
            "wise_ft.alphas": ",".join(f"{a:g}" for a in alphas),
            "wise_ft.bn": "re-estimated on train for 0 < alpha < 1" if has_bn else "no BatchNorm",
        },
        curves=curves,
        metrics={"wise_ft.alpha": alphas[chosen]},
    )
    return dataclasses.replace(result, best_val_acc=curves["wise_ft.val_acc"][chosen])
