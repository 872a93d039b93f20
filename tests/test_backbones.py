"""Our own backbones are real timm models: registered, built by name, usable by every strategy."""

from __future__ import annotations

import timm
import torch

import tlbench.models.build  # noqa: F401  (registers tlbench.backbones)
from tlbench.catalog.strategies import phases_for
from tlbench.models.build import build_model
from tlbench.models.parts import head_parameter_names
from tlbench.spec import HeadConfig, TrainConfig, WeightsSpec
from tlbench.train.freezing import apply_phase


def test_seed_cnn_is_a_timm_model():
    assert timm.is_model("seed_cnn")
    model = build_model(
        "seed_cnn", num_classes=7, weights=WeightsSpec(kind="none"), head=HeadConfig(type="mlp", hidden=(16,))
    )
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 7)
    assert timm.data.resolve_model_data_config(model)["input_size"] == (3, 64, 64)


def test_seed_cnn_with_every_strategy():
    model = timm.create_model("seed_cnn", num_classes=3)
    for name, params in (
        ("linear_probe", {}),
        ("partial", {"freeze_stages": 1}),
        ("finetune", {}),
        ("scratch", {}),
    ):
        (phase, *_) = phases_for(name, params, TrainConfig(epochs=2))
        trainable, total = apply_phase(model, phase)
        assert 0 < trainable <= total
        if name == "linear_probe":
            assert {n for n, p in model.named_parameters() if p.requires_grad} == head_parameter_names(model)
