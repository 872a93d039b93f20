"""Weights: saved to a file and loaded back reproduce outputs exactly; mismatches are named."""

from __future__ import annotations

import pytest
import timm
import torch

from tlbench.catalog.backbones import check_backbone_name
from tlbench.models.build import build_model, trained_settings
from tlbench.models.weights import WeightsError, load_backbone_weights, read_state_dict, save_weights
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


# --- real-world weight files (issue #13) ------------------------------------------------------


def _backbone_equal(source, target, size=32):
    x = torch.randn(2, 3, size, size)
    return torch.equal(_features(source, x), _features(target, x))


def test_file_without_num_batches_tracked_loads(tmp_path):
    torch.manual_seed(0)
    source = timm.create_model("test_efficientnet", num_classes=7)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(state) < len(source.state_dict())  # the file really lacks them
    torch.save(state, tmp_path / "old.pth")
    target = build_model(
        "test_efficientnet", num_classes=3, weights=WeightsSpec.parse(f"file:{tmp_path / 'old.pth'}")
    )
    assert _backbone_equal(source, target)


def test_torchvision_layout_densenet_loads_through_timms_filter(tmp_path):
    """torchvision's published densenet121-a639ec97.pth names layers ``denselayer1.norm.1`` where
    the module says ``norm1``, and predates ``num_batches_tracked``: timm's filter converts it."""
    import re

    torch.manual_seed(0)
    source = timm.create_model("densenet121", num_classes=1000)
    old = {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
        for k, v in source.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    torch.save(old, tmp_path / "densenet121-a639ec97.pth")
    target = build_model(
        "densenet121",
        num_classes=5,
        weights=WeightsSpec.parse(f"file:{tmp_path / 'densenet121-a639ec97.pth'}"),
    )
    assert _backbone_equal(source, target, size=64)
    # a file that does not fit even after the conversion still names keys and shapes
    old["features.denseblock1.denselayer1.conv.1.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(old, tmp_path / "bad.pth")
    with pytest.raises(
        WeightsError, match=r"shape mismatches.*denselayer1\.conv1\.weight.*after timm's conversion"
    ):
        build_model("densenet121", num_classes=5, weights=WeightsSpec.parse(f"file:{tmp_path / 'bad.pth'}"))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": sd, "epoch": torch.tensor(3)},
        lambda sd: {"model": sd},
        lambda sd: {"model_state_dict": sd},
        lambda sd: {"model": {k: v * 0 for k, v in sd.items()}, "model_ema": sd},  # timm: EMA wins
        lambda sd: {f"module.{k}": v for k, v in sd.items()},  # DDP
    ],
    ids=["state_dict", "model", "model_state_dict", "model_ema", "module_prefix"],
)
def test_nested_checkpoints_load(tmp_path, wrap):
    torch.manual_seed(0)
    source = timm.create_model("test_resnet", num_classes=4)
    torch.save(wrap(source.state_dict()), tmp_path / "ckpt.pth")
    target = build_model(
        "test_resnet", num_classes=2, weights=WeightsSpec.parse(f"file:{tmp_path / 'ckpt.pth'}")
    )
    assert _backbone_equal(source, target)


# --- the new head: one init rule whatever the backbone family ------------------------------------

# timm's tiny models of each family, and each family the shipped grids use (EfficientNet and
# MobileNet's "goog" init made a 10-class head 11x PyTorch's; ViT 0.7x, RegNet 0.3x)
FAMILIES = [
    "test_efficientnet",
    "test_resnet",
    "test_vit",
    "test_convnext",
    "seed_cnn",
    "mobilenetv3_large_100",
    "efficientnet_b0",
    "resnet18",
    "densenet121",
    "vit_small_patch16_224",
]


@pytest.mark.parametrize("backbone", FAMILIES)
def test_new_head_has_the_same_statistics_whatever_the_family(backbone):
    torch.manual_seed(0)
    zero = build_model(backbone, num_classes=10, weights=WeightsSpec(kind="none")).get_classifier()
    assert torch.count_nonzero(zero.weight) == 0 and torch.count_nonzero(zero.bias) == 0
    for init, expected in (("normal", lambda fan_in: 0.01), ("pytorch", lambda fan_in: (3 * fan_in) ** -0.5)):
        head = build_model(
            backbone, num_classes=10, weights=WeightsSpec(kind="none"), head=HeadConfig(init=init)
        ).get_classifier()
        std = head.weight.std().item()
        assert std == pytest.approx(expected(head.weight.shape[1]), rel=0.15), (init, std)


@pytest.mark.parametrize("head", [HeadConfig(dropout=0.3), HeadConfig(type="mlp", hidden=(32,), dropout=0.1)])
def test_every_head_shape_gets_the_same_logits_init(head):
    model = build_model("test_efficientnet", num_classes=6, weights=WeightsSpec(kind="none"), head=head)
    layers = [m for m in model.get_classifier().modules() if isinstance(m, torch.nn.Linear)]
    assert torch.count_nonzero(layers[-1].weight) == 0  # the logits layer: the rule
    for hidden in layers[:-1]:  # hidden layers: PyTorch's fan-in init, never zero (they must learn)
        assert hidden.weight.std().item() == pytest.approx((3 * hidden.in_features) ** -0.5, rel=0.15)


def test_first_batch_loss_from_a_checkpoint_is_ln_classes(tmp_path):
    """A pretrained backbone's pre-logits are large; with the architecture's own head init
    (EfficientNet's: 5x PyTorch's here) the first loss was far above ln(C)."""
    import math

    torch.manual_seed(0)
    source = timm.create_model("test_efficientnet", num_classes=1000)
    state = source.state_dict()
    state["bn2.weight"] = state["bn2.weight"] * 8  # the scale of a trained network's features
    torch.save(state, tmp_path / "pretrained.pth")
    x, y = torch.randn(32, 3, 32, 32), torch.arange(32) % 10
    model = build_model(
        "test_efficientnet", num_classes=10, weights=WeightsSpec.parse(f"file:{tmp_path / 'pretrained.pth'}")
    )
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), y).item()
    assert loss == pytest.approx(math.log(10), abs=0.3)
    own = timm.create_model("test_efficientnet", num_classes=10)  # the model's own head init
    own.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier")}, strict=False)
    own.train()
    assert torch.nn.functional.cross_entropy(own(x), y).item() > math.log(10) + 0.3  # what #13 fixed


def test_trained_settings_record_timms_defaults():
    model = build_model(
        "test_convnext",
        num_classes=3,
        weights=WeightsSpec(kind="none"),
        model_kwargs={"drop_rate": 0.25, "drop_path_rate": 0.1},
    )
    settings = trained_settings(model)
    assert settings["model.drop_rate"] == 0.25
    assert settings["model.drop_path_rate"] == pytest.approx(0.1)
    assert settings["model.batchnorm_layers"] == 0
    bn = trained_settings(build_model("test_resnet", num_classes=3, weights=WeightsSpec(kind="none")))
    assert bn["model.batchnorm_layers"] > 0 and bn["model.bn_momentum"] == "0.1"
