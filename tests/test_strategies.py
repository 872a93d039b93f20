"""Each strategy's frozen / trainable parameter sets, and frozen BatchNorm in a linear probe."""

from __future__ import annotations

import pytest
import timm
import torch

from tlbench.catalog.strategies import STRATEGIES, phases_for
from tlbench.models.parts import head_parameter_names, stage_groups
from tlbench.spec import TrainConfig
from tlbench.train.freezing import apply_phase, set_train_mode


@pytest.fixture(params=["test_resnet", "test_convnext", "test_vit"])
def model(request):
    return timm.create_model(request.param, num_classes=5)


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_registry_has_every_strategy():
    assert STRATEGIES.names() == [
        "bitfit",
        "finetune",
        "l2sp",
        "linear_probe",
        "lora",
        "lp_ft",
        "norm_tune",
        "partial",
        "scratch",
        "vpt",
        "wise_ft",
    ]


def test_linear_probe_trains_only_the_head(model):
    (phase,) = phases_for("linear_probe", {}, TrainConfig())
    trainable, total = apply_phase(model, phase)
    assert _trainable(model) == head_parameter_names(model)
    assert 0 < trainable < total
    assert trainable == sum(
        p.numel() for n, p in model.named_parameters() if n in head_parameter_names(model)
    )


def test_finetune_and_scratch_train_everything(model):
    for name in ("finetune", "scratch"):
        (phase,) = phases_for(name, {}, TrainConfig())
        trainable, total = apply_phase(model, phase)
        assert trainable == total


def test_partial_freezes_stem_and_first_stages(model):
    groups = stage_groups(model)
    (phase,) = phases_for("partial", {"freeze_stages": 1}, TrainConfig())
    apply_phase(model, phase)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == set(groups[0]) | set(groups[1])
    assert head_parameter_names(model) <= _trainable(model)
    # more frozen stages -> fewer trainable parameters
    t1, _ = apply_phase(model, phases_for("partial", {"freeze_stages": 1}, TrainConfig())[0])
    t2, _ = apply_phase(model, phases_for("partial", {"freeze_stages": 2}, TrainConfig())[0])
    assert t2 < t1


def test_lp_ft_phases():
    phases = phases_for("lp_ft", {"lp_epochs": 3, "ft_lr_scale": 0.1}, TrainConfig(epochs=10, lr=0.5))
    assert [(p.trainable, p.epochs) for p in phases] == [("head", 3), ("all", 7)]
    assert phases[1].lr == pytest.approx(0.05)
    default = phases_for("lp_ft", {}, TrainConfig(epochs=4))
    assert [p.epochs for p in default] == [2, 2]


def test_linear_probe_keeps_batchnorm_statistics_frozen():
    model = timm.create_model("test_resnet", num_classes=3)
    apply_phase(model, phases_for("linear_probe", {}, TrainConfig())[0])
    set_train_mode(model)
    bn = model.conv1[1]
    before = bn.running_mean.clone()
    model(torch.randn(4, 3, 32, 32) * 5 + 3)
    assert torch.equal(bn.running_mean, before)
    assert model.get_classifier().training
    # fine-tune: statistics do move
    apply_phase(model, phases_for("finetune", {}, TrainConfig())[0])
    set_train_mode(model)
    model(torch.randn(4, 3, 32, 32) * 5 + 3)
    assert not torch.equal(bn.running_mean, before)


def test_batchnorm_mode_defaults_and_frozen_mode():
    """``bn`` per strategy: LP-FT adapts the statistics before its probe, the others train them."""
    assert [p.adapt_bn for p in phases_for("lp_ft", {}, TrainConfig(epochs=4))] == [True, False]
    assert not any(p.bn_frozen for p in phases_for("lp_ft", {}, TrainConfig(epochs=4)))
    for name in ("finetune", "partial"):
        (phase,) = phases_for(name, {}, TrainConfig())
        assert not phase.bn_frozen and not phase.adapt_bn
    (frozen,) = phases_for("finetune", {"bn": "frozen"}, TrainConfig())
    model = timm.create_model("test_resnet", num_classes=3)
    apply_phase(model, frozen)
    set_train_mode(model, frozen)
    bn = model.conv1[1]
    before = bn.running_mean.clone()
    model(torch.randn(4, 3, 32, 32) * 5 + 3)
    assert torch.equal(bn.running_mean, before)  # statistics kept...
    assert bn.weight.requires_grad and not bn.training  # ...while scale and shift train
    with pytest.raises(ValueError, match="bn"):
        phases_for("finetune", {"bn": "sometimes"}, TrainConfig())
