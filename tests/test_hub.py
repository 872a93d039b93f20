"""One hub name for a backbone's pretrained weights, the same in the spec, prefetch and build_model."""

from __future__ import annotations

import pytest
import timm
import timm.models

from tlbench.catalog.backbones import hub_model_name, split_model_name_tag
from tlbench.cells import expand
from tlbench.models import build as models
from tlbench.preflight.prefetch import hub_name
from tlbench.spec import SpecError, WeightsSpec, parse_grid

GRID = {
    "train": {"epochs": 1},
    "datasets": ["digits"],
    "strategies": ["linear_probe"],
    "optimizers": ["sgd"],
    "augmentations": ["none"],
}


@pytest.mark.parametrize(
    "name", ["resnet50", "resnet50.a1_in1k", "vit_base_patch16_224.augreg2_in21k_ft_in1k", "a.b.c", "a.", ""]
)
def test_split_follows_timm(name):
    assert split_model_name_tag(name) == timm.models.split_model_name_tag(name)
    assert split_model_name_tag(name, "x") == timm.models.split_model_name_tag(name, "x")


@pytest.mark.parametrize(
    ("backbone", "tag", "expected"),
    [
        ("resnet18", "", "resnet18"),  # timm's default tag
        ("resnet18", "a1_in1k", "resnet18.a1_in1k"),
        ("resnet18.a1_in1k", "", "resnet18.a1_in1k"),
        ("resnet18.a1_in1k", "a1_in1k", "resnet18.a1_in1k"),  # the same tag twice is one tag
    ],
)
def test_hub_model_name(backbone, tag, expected):
    assert hub_model_name(backbone, tag) == expected


def test_two_different_tags_are_refused():
    with pytest.raises(ValueError, match="hub:tv_in1k") as info:
        hub_model_name("resnet18.a1_in1k", "tv_in1k")
    assert "'a1_in1k'" in str(info.value)


def test_the_spec_reports_two_tags_at_the_weights_key():
    raw = dict(GRID, backbones=[{"name": "resnet18.a1_in1k", "weights": "hub:tv_in1k"}])
    with pytest.raises(SpecError) as info:
        parse_grid(raw, file="g.yaml")  # no timm needed to see the conflict
    assert info.value.loc == "backbones[0].weights" and "a1_in1k" in info.value.detail


def test_a_tag_on_the_backbone_is_checked_against_timm():
    """``resnet18.a9_in1k`` with plain ``hub`` used to pass the spec and fail at training time."""
    raw = dict(GRID, backbones=[{"name": "resnet18.a9_in1k", "weights": "hub"}])
    with pytest.raises(SpecError) as info:
        parse_grid(raw, file="g.yaml", check_backbones=True)
    assert info.value.loc == "backbones[0].name" and "resnet18.a1_in1k" in info.value.detail
    parse_grid(dict(raw, backbones=[{"name": "resnet18.a1_in1k", "weights": "hub"}]), check_backbones=True)


@pytest.mark.parametrize(
    ("backbone", "weights"), [("resnet18", "hub:a1_in1k"), ("resnet18.a1_in1k", "hub"), ("resnet18", "hub")]
)
def test_prefetch_and_build_model_ask_timm_for_the_same_name(backbone, weights, monkeypatch):
    (cell,) = expand(parse_grid(dict(GRID, backbones=[{"name": backbone, "weights": weights}])))
    asked: list[str] = []

    def create_model(name, **kwargs):
        asked.append(name)
        raise RuntimeError("no network in this test")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # skip the reachability probe
    monkeypatch.setattr(timm, "create_model", create_model)
    with pytest.raises(models.WeightsError):
        models.build_model(backbone, num_classes=2, weights=WeightsSpec.parse(weights))
    assert asked == [hub_name(cell)] == [hub_model_name(backbone, WeightsSpec.parse(weights).value)]
