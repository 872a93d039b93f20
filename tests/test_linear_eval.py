"""A ``linear_probe`` with ``solver: lbfgs`` through ``fit``: one sweep over the L2 grid on the
frozen features, the chosen λ's head in the model, test once; what the run is told."""

from __future__ import annotations

import pytest
import torch
from helpers import SYNTH, Recorder, make_cell

from tlbench.data import load_dataset
from tlbench.train import evaluate, fit
from tlbench.train.logreg import DEFAULT_GRID


def _lbfgs(metric: str = "acc", **params):
    return make_cell(
        {"name": "linear_probe", "params": {"solver": "lbfgs", **params}}, metric=metric, epochs=7, lr=3.0
    )


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", params=SYNTH, seed=0)


@pytest.fixture(scope="module")
def probed(data):
    rec = Recorder()
    return fit(_lbfgs(), data, reporter=rec, device="cpu"), rec


def test_one_sweep_instead_of_epochs_with_the_chosen_l2_and_its_curve(probed):
    result, rec = probed
    assert len(result.history) == 1 and [e for e, _ in rec.epochs] == [0]  # one pass: one rung
    assert rec.started["probe.solver"] == "lbfgs" and rec.started["phases"] == "linear_probe:1"
    grid = [float(v) for v in rec.started["probe.l2_grid"].split(",")]
    assert grid == pytest.approx(DEFAULT_GRID, rel=1e-5)
    curve = result.curves["probe.val_acc"]
    assert len(curve) == 45 and len(result.curves["probe.iterations"]) == 45
    chosen = grid.index(min(grid, key=lambda v: abs(v - float(result.params["probe.l2"]))))
    assert curve[chosen] == max(curve) == result.best_val_acc  # chosen on val, before the refit
    assert all(v < max(curve) for v in curve[chosen + 1 :])  # ties go to the strongest λ
    assert result.metrics["probe.not_converged"] == 0 and result.warnings == []
    assert result.final_metrics()["epochs_trained"] == 1.0
    assert 0 <= result.final_metrics()["test_mean_per_class_acc"] <= 1


def test_the_model_holds_the_head_that_was_tested(probed, data):
    """The checkpoint a ``cell:`` source would hand on: its head alone gives the test accuracy."""
    import timm

    result, _ = probed
    model = timm.create_model("test_resnet", num_classes=data.num_classes)
    model.load_state_dict(result.best_state)
    assert float(result.best_state["fc.weight"].abs().max()) > 0  # not the zero init
    from tlbench.data import make_augment

    info = result.info
    tf = make_augment("none", out_size=info["input_size"], mean=info["mean"], std=info["std"], train=False)
    got = evaluate(model, data.test, tf, batch_size=512, num_classes=data.num_classes)
    assert got["acc"] == pytest.approx(result.test_acc, abs=1.5 / len(data.test))


def test_the_store_and_a_fresh_extraction_give_the_same_probe(probed, data):
    result, _ = probed
    again = fit(_lbfgs(), data, device="cpu", feature_store=False, cache_features=False)
    assert again.params == result.params and again.test_acc == result.test_acc
    assert again.curves["probe.val_acc"] == result.curves["probe.val_acc"]


def test_selection_by_the_cells_metric_and_a_grid_of_its_own(data):
    result = fit(_lbfgs(metric="mean_per_class_acc", l2=[1e-3, 1e-1, 10.0], refit=False), data, device="cpu")
    curve = result.curves["probe.val_mean_per_class_acc"]
    assert len(curve) == 3 and result.history[0]["val_mean_per_class_acc"] == max(curve)
    assert result.final_metrics()["best_val_mean_per_class_acc"] == max(curve)


def test_an_sgd_run_selects_its_epoch_by_the_cells_metric(data):
    cell = make_cell("scratch", metric="mean_per_class_acc", epochs=4, augmentation="basic")
    result = fit(cell, data, device="cpu")
    per_class = [h["val_mean_per_class_acc"] for h in result.history]
    assert result.best_epoch == per_class.index(max(per_class))
    assert result.best_val_acc == result.history[result.best_epoch]["val_acc"]
    assert torch.is_tensor(result.best_state["fc.weight"])
