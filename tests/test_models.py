"""Weights: saved to a file and loaded back reproduce outputs exactly; mismatches are named."""

from __future__ import annotations

import pytest
import timm
import torch

from tlbench.models import (
    WeightsError,
    build_model,
    check_backbone_name,
    load_backbone_weights,
    read_state_dict,
    save_weights,
)
from tlbench.registry import UnknownNameError
from tlbench.spec import HeadConfig, WeightsSpec


def _features(model, x):
    model.eval()
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_file_weights_reproduce_backbone_outputs_exactly(tmp_path, suffix):
    torch.manual_seed(0)
    source = timm.create_model("test_resnet", num_classes=7)
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_weights(source, path)
    else:
        torch.save(source.state_dict(), path)
    target = build_model("test_resnet", num_classes=3, weights=WeightsSpec.parse(f"file:{path}"))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(_features(source, x), _features(target, x))
    assert target.get_classifier().out_features == 3  # head replaced for the target's classes


def test_round_trip_full_model_outputs(tmp_path):
    model = timm.create_model("test_convnext", num_classes=4)
    save_weights(model, tmp_path / "m.safetensors")
    again = timm.create_model("test_convnext", num_classes=4)
    again.load_state_dict(read_state_dict(tmp_path / "m.safetensors"))
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    again.eval()
    assert torch.equal(model(x), again(x))


def test_mismatched_file_names_keys_and_shapes(tmp_path):
    save_weights(timm.create_model("test_convnext", num_classes=2), tmp_path / "other.safetensors")
    with pytest.raises(WeightsError) as info:
        build_model(
            "test_resnet", num_classes=2, weights=WeightsSpec.parse(f"file:{tmp_path / 'other.safetensors'}")
        )
    text = str(info.value)
    assert "missing keys" in text and "conv1.0.weight" in text
    assert "unexpected keys" in text and "stages.0.blocks" in text


def test_shape_mismatch_is_reported(tmp_path):
    model = timm.create_model("test_resnet", num_classes=2)
    state = model.state_dict()
    state["conv1.0.weight"] = torch.zeros(1, 1, 3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"conv1\.0\.weight: file \(1, 1, 3, 3\)"):
        load_backbone_weights(timm.create_model("test_resnet", num_classes=2), tmp_path / "bad.pth")


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pth")  # a module, not tensors
    with pytest.raises(WeightsError, match="weights_only"):
        read_state_dict(tmp_path / "pickled.pth")


def test_missing_file_says_where():
    with pytest.raises(WeightsError, match="not found: /nonexistent/w.safetensors"):
        build_model(
            "test_resnet", num_classes=2, weights=WeightsSpec.parse("file:/nonexistent/w.safetensors")
        )


def test_mlp_head():
    model = build_model(
        "test_resnet",
        num_classes=4,
        weights=WeightsSpec(kind="none"),
        head=HeadConfig(type="mlp", hidden=(32, 16), dropout=0.2),
    )
    head = model.get_classifier()
    assert isinstance(head, torch.nn.Sequential)
    assert [m.out_features for m in head if isinstance(m, torch.nn.Linear)] == [32, 16, 4]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_hub_weights_offline_fail_with_a_clear_message():
    with pytest.raises(WeightsError, match="file:"):
        build_model("test_resnet", num_classes=2, weights=WeightsSpec(kind="hub"))


def test_backbone_names_checked_against_timm():
    check_backbone_name("resnet18")
    check_backbone_name("resnet18.a1_in1k")
    with pytest.raises(UnknownNameError, match="did you mean 'resnet18'"):
        check_backbone_name("resnet18x")
