"""The parameter-efficient and weight-space strategies: exactly what trains, LoRA's merge, VPT's
tokens, L2-SP's penalty, WiSE-FT's endpoints, resuming, and the grid errors before training."""

from __future__ import annotations

import pytest
import timm
import torch
from helpers import SYNTH, StopAfter, make_cell

from tlbench.catalog.strategies import phases_for
from tlbench.catalog.strategy_params import LoraParams, VptParams
from tlbench.data import load_dataset
from tlbench.models.lora import add_lora, merge, resolve_targets
from tlbench.models.parts import head_parameter_names
from tlbench.models.prompts import add_prompts
from tlbench.spec import TrainConfig
from tlbench.train import fit
from tlbench.train.freezing import apply_phase, set_train_mode


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _phase(name: str, **params):
    return phases_for(name, params, TrainConfig())[0]


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", params=SYNTH, seed=0)


@pytest.mark.parametrize("backbone", ["test_vit", "test_resnet"])
def test_lora_trains_only_its_matrices_and_the_head(backbone):
    model = timm.create_model(backbone, num_classes=5)
    plain = set(dict(model.named_parameters()))
    head = head_parameter_names(model)
    targets = resolve_targets(model, None)
    add_lora(model, LoraParams())
    trainable, total = apply_phase(model, _phase("lora"))
    expected = head | {f"{t}.lora_{ab}.default.weight" for t in targets for ab in "AB"}
    assert _trainable(model) == expected
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if n in expected) < total
    if backbone == "test_vit":  # the attention and MLP linears, not the patch embedding
        assert {t.split(".", 2)[-1] for t in targets} == {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"}
    else:  # the stages' convs: not the stem
        assert targets and all(t.startswith("layer") for t in targets)
    assert plain - head <= {n.replace(".base_layer", "") for n in dict(model.named_parameters())}


@pytest.mark.parametrize("backbone", ["test_vit", "test_resnet"])
def test_bitfit_trains_only_biases_and_the_head(backbone):
    model = timm.create_model(backbone, num_classes=5)
    apply_phase(model, _phase("bitfit"))
    head = head_parameter_names(model)
    assert _trainable(model) == head | {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    if backbone == "test_resnet":  # no conv bias: the norms' shifts are the biases
        convs = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
        assert not any(n.rsplit(".", 1)[0] in convs for n in _trainable(model))


@pytest.mark.parametrize("backbone", ["test_vit", "test_resnet"])
def test_norm_tune_trains_only_norms_and_the_head(backbone):
    model = timm.create_model(backbone, num_classes=5)
    apply_phase(model, _phase("norm_tune"))
    norm_types = (torch.nn.LayerNorm, torch.nn.BatchNorm2d)
    norms = {
        f"{m}.{p}"
        for m, mod in model.named_modules()
        if isinstance(mod, norm_types)
        for p, _ in mod.named_parameters(recurse=False)
    }
    assert norms and _trainable(model) == head_parameter_names(model) | norms
    set_train_mode(model, _phase("norm_tune"))  # bn: train by default
    assert all(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    set_train_mode(model, _phase("norm_tune", bn="frozen"))
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize("deep", [False, True])
def test_vpt_trains_only_prompts_and_the_head_and_keeps_the_output_shape(deep):
    model = timm.create_model("test_vit", num_classes=5).eval()
    x = torch.randn(2, 3, 160, 160)
    before = model(x)
    add_prompts(model, VptParams(tokens=4, deep=deep))
    apply_phase(model, _phase("vpt"))
    assert _trainable(model) == head_parameter_names(model) | {"vpt.prompts"}
    assert model.vpt.prompts.shape == (len(model.blocks) if deep else 1, 4, model.embed_dim)
    after = model(x)
    assert after.shape == before.shape and not torch.allclose(after, before)  # the prompts take part
    after.sum().backward()
    assert model.vpt.prompts.grad is not None and model.vpt.prompts.grad.abs().sum() > 0


@pytest.mark.parametrize("backbone, dora", [("test_vit", False), ("test_vit", True), ("test_resnet", False)])
def test_merged_lora_gives_the_unmerged_logits(backbone, dora):
    model = timm.create_model(backbone, num_classes=5).eval()
    tuner = add_lora(model, LoraParams(r=4, dora=dora))
    with torch.no_grad():  # a trained-looking update (peft starts B at zero)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    x = torch.randn(3, 3, *model.pretrained_cfg["input_size"][1:])
    with torch.no_grad():
        unmerged = model(x)
        plain = merge(tuner)
        merged = plain(x)
    assert not any("lora" in k or "base_layer" in k for k in plain.state_dict())
    assert set(plain.state_dict()) == set(timm.create_model(backbone, num_classes=5).state_dict())
    assert torch.allclose(merged, unmerged, atol=1e-5), (merged - unmerged).abs().max()


def test_a_lora_cell_saves_a_plain_timm_state_dict(data):
    cell = make_cell("lora", backbone="test_vit", epochs=2, augmentation="basic")
    result = fit(cell, data, device="cpu")
    fresh = timm.create_model("test_vit", num_classes=data.num_classes)
    fresh.load_state_dict(result.best_state)  # strict: no peft key left
    assert 0 < result.params_trainable < result.params_total


def test_l2sp_penalty_pulls_towards_the_pretrained_weights():
    from tlbench.train.regularizers import L2SP

    model = timm.create_model("test_resnet", num_classes=3)
    penalty = L2SP(model, alpha=0.5, beta=0.25)
    assert penalty().item() == pytest.approx(
        0.125 * sum(p.pow(2).sum().item() for n, p in model.named_parameters() if n.startswith("fc."))
    )
    with torch.no_grad():
        model.conv1[0].weight.add_(1.0)
    moved = model.conv1[0].weight.numel() * 0.25
    head = 0.125 * sum(p.pow(2).sum().item() for n, p in model.named_parameters() if n.startswith("fc."))
    assert penalty().item() == pytest.approx(moved + head, rel=1e-5)


def test_l2sp_with_no_pull_is_finetune_without_weight_decay(data):
    plain = fit(make_cell("finetune", epochs=2, weight_decay=0.0), data, device="cpu")
    free = fit(
        make_cell({"name": "l2sp", "params": {"alpha": 0, "beta": 0}}, epochs=2, weight_decay=0.1),
        data,
        device="cpu",
    )
    assert [h["val_loss"] for h in free.history] == pytest.approx([h["val_loss"] for h in plain.history])
    pulled = fit(make_cell({"name": "l2sp", "params": {"alpha": 10.0}}, epochs=2), data, device="cpu")
    assert [h["val_loss"] for h in pulled.history] != [h["val_loss"] for h in plain.history]


def test_wise_ft_endpoints_are_the_probe_and_the_finetune(data, tmp_path):
    """α = 1 is exactly lp_ft's selected weights; α = 0 exactly the weights after its probe phase
    (read from an lp_ft checkpoint taken at the end of that phase)."""
    from tlbench.train.checkpoint import Checkpointer

    lp_cell = make_cell("lp_ft", epochs=4)
    lp = fit(lp_cell, data, device="cpu")
    one = fit(make_cell({"name": "wise_ft", "params": {"alphas": [1.0]}}, epochs=4), data, device="cpu")
    assert one.test_acc == lp.test_acc and one.params["wise_ft.alpha"] == 1.0
    for k, v in lp.best_state.items():
        assert torch.equal(v, one.best_state[k]), k
    ckpt = Checkpointer(tmp_path / "ck", lp_cell.id)
    with pytest.raises(KeyboardInterrupt):  # lp_ft's probe phase is epochs 0-1
        fit(lp_cell, data, device="cpu", checkpoint=ckpt, reporter=StopAfter(1))
    after_probe = torch.load(ckpt.last, weights_only=True)["model"]
    zero = fit(make_cell({"name": "wise_ft", "params": {"alphas": [0.0]}}, epochs=4), data, device="cpu")
    assert zero.params["wise_ft.alpha"] == 0.0 and zero.curves["wise_ft.test_acc"] == [zero.test_acc]
    for k, v in after_probe.items():
        assert torch.equal(v, zero.best_state[k]), k


def test_wise_ft_picks_alpha_on_val_and_logs_the_curves(data):
    alphas = [0.0, 0.5, 1.0]
    r = fit(make_cell({"name": "wise_ft", "params": {"alphas": alphas}}, epochs=4), data, device="cpu")
    val = r.curves["wise_ft.val_acc"]
    assert len(val) == len(r.curves["wise_ft.test_acc"]) == 3
    chosen = alphas.index(r.params["wise_ft.alpha"])
    assert val[chosen] == max(val) and chosen == val.index(max(val))
    assert r.best_val_acc == val[chosen] and r.test_acc == r.curves["wise_ft.test_acc"][chosen]
    assert r.params["wise_ft.bn"].startswith("re-estimated")  # test_resnet has BatchNorm


@pytest.mark.parametrize(
    "strategy, backbone, stop",
    [
        ("lora", "test_vit", 1),
        ("vpt", "test_vit", 0),
        ("bitfit", "test_resnet", 1),
        ("l2sp", "test_resnet", 1),
        ({"name": "wise_ft", "params": {"alphas": [0, 0.5, 1]}}, "test_resnet", 2),  # θ₀ from the checkpoint
    ],
    ids=["lora", "vpt", "bitfit", "l2sp", "wise_ft"],
)
def test_a_resumed_cell_ends_exactly_as_an_uninterrupted_one(data, tmp_path, strategy, backbone, stop):
    from tlbench.train.checkpoint import Checkpointer

    cell = make_cell(strategy, backbone=backbone, epochs=4, augmentation="basic")
    full = fit(cell, data, device="cpu")
    ckpt = Checkpointer(tmp_path / "ck", cell.id, interval_s=0)  # every epoch: stop anywhere
    with pytest.raises(KeyboardInterrupt):
        fit(cell, data, device="cpu", checkpoint=ckpt, reporter=StopAfter(stop))
    resumed = fit(cell, data, device="cpu", checkpoint=ckpt)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    assert resumed.test_acc == full.test_acc and resumed.curves == full.curves
    for k, v in full.best_state.items():
        assert torch.equal(v, resumed.best_state[k]), k


def test_a_vpt_cells_weights_load_as_a_plain_source(data, tmp_path):
    """Its prompts are the strategy's: a model built from a vpt cell's weights leaves them out."""
    from tlbench.models.build import build_model
    from tlbench.models.weights import save_weights_dict
    from tlbench.spec import WeightsSpec

    result = fit(make_cell("vpt", backbone="test_vit", epochs=1), data, device="cpu")
    assert "vpt.prompts" in result.best_state
    path = tmp_path / "vpt.safetensors"
    save_weights_dict(result.best_state, path)
    model = build_model("test_vit", num_classes=3, weights=WeightsSpec(kind="file", value=str(path)))
    assert not hasattr(model, "vpt")
    assert torch.equal(model.blocks[0].attn.qkv.weight, result.best_state["blocks.0.attn.qkv.weight"])
