"""Inputs of a grid: local vs to-download, prefetch reports failures, hub tags, the HF cache offline."""

from __future__ import annotations

import time

import pytest
import timm
import torch
from click.testing import CliRunner

from tlbench.cells import expand
from tlbench.cli import main
from tlbench.models.build import build_model
from tlbench.models.weights import WeightsError, save_weights
from tlbench.preflight.prefetch import fetch, status
from tlbench.spec import SpecError, WeightsSpec, parse_grid

GRID = {
    "train": {"epochs": 1},
    "datasets": ["digits", {"name": "synthetic", "params": {"classes": 2}}, "cifar10"],
    "backbones": [{"name": "test_resnet", "weights": "hub"}],
    "strategies": ["linear_probe"],
    "optimizers": ["sgd"],
    "augmentations": ["none"],
}


def test_status_and_prefetch_offline(tmp_path):
    import huggingface_hub.constants as hc  # the endpoint weights come from: HF_ENDPOINT or the hub

    cells = expand(parse_grid(GRID))
    st = {(i.kind, i.name): i for i in status(cells, tmp_path)}
    assert st[("dataset", "digits")].state == "bundled"
    assert st[("dataset", "synthetic")].state == "generated"
    assert st[("dataset", "cifar10")].state == "download"
    assert st[("weights", "test_resnet")].state == "download"
    assert st[("weights", "test_resnet")].where.startswith(f"{hc.ENDPOINT}/timm/test_resnet.r160_in1k")
    t0 = time.perf_counter()
    results = {(i.kind, i.name): i for i in fetch(cells, tmp_path)}  # no network here: fails, fast, reported
    assert time.perf_counter() - t0 < 60
    assert not results[("dataset", "cifar10")].ok and "cifar10" in results[("dataset", "cifar10")].where
    assert not results[("weights", "test_resnet")].ok
    assert results[("dataset", "digits")].ok


def test_prefetch_cli_exits_1_and_lists_failures(tmp_path, write_grid):
    grid = write_grid(
        "name: p\ntrain: {epochs: 1}\ndatasets: [cifar10]\nbackbones: [{name: test_resnet, weights: none}]\n"
        "strategies: [scratch]\noptimizers: [sgd]\naugmentations: [none]\n"
    )
    result = CliRunner().invoke(main, ["prefetch", "--grid", str(grid), "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert "cifar10" in result.output and "failed" in result.output


def test_unknown_hub_tag_is_caught_before_training():
    raw = dict(GRID, backbones=[{"name": "resnet18", "weights": "hub:a9_in1k"}])
    with pytest.raises(SpecError) as info:
        parse_grid(raw, file="g.yaml", check_backbones=True)
    assert info.value.loc == "backbones[0].name" and "resnet18.a1_in1k" in info.value.detail
    real = dict(GRID, backbones=[{"name": "resnet18", "weights": "hub:a1_in1k"}])
    parse_grid(real, check_backbones=True)  # a real tag passes


def test_offline_hub_failure_is_fast_and_names_the_fix():
    t0 = time.perf_counter()
    with pytest.raises(WeightsError, match="prefetch"):
        build_model("test_resnet", num_classes=2, weights=WeightsSpec(kind="hub"))
    assert time.perf_counter() - t0 < 10


def test_a_prepopulated_hf_cache_is_honoured_offline(tmp_path, monkeypatch):
    """timm reads hub weights from the HF cache layout with HF_HUB_OFFLINE=1 (what prefetch leaves)."""
    import huggingface_hub.constants as hc

    cache = tmp_path / "hf"
    snap = cache / "models--timm--test_resnet.r160_in1k" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (cache / "models--timm--test_resnet.r160_in1k" / "refs").mkdir()
    (cache / "models--timm--test_resnet.r160_in1k" / "refs" / "main").write_text("0" * 40)
    torch.manual_seed(3)
    reference = timm.create_model("test_resnet")
    save_weights(reference, snap / "model.safetensors")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    model = build_model("test_resnet", num_classes=4, weights=WeightsSpec(kind="hub"))
    assert torch.equal(model.conv1[0].weight, reference.conv1[0].weight)
    cells = expand(parse_grid(GRID))
    (w,) = [i for i in status(cells, tmp_path) if i.kind == "weights"]
    assert w.state == "local" and w.where.endswith("model.safetensors")


def test_prefetch_never_downloads_a_missing_local_folder(tmp_path):
    from tlbench.preflight.prefetch import fetch

    missing = tmp_path / "photos"
    raw = {
        "name": "local",
        "datasets": [{"name": "imagefolder", "params": {"path": str(missing)}}],
        "backbones": [{"name": "test_resnet", "weights": "none"}],
        "strategies": ["scratch"],
        "optimizers": ["sgd"],
        "augmentations": ["none"],
    }
    from tlbench.cells import expand
    from tlbench.spec import parse_grid

    (item,) = [i for i in fetch(expand(parse_grid(raw)), tmp_path) if i.kind == "dataset"]
    assert item.state == "failed" and str(missing) in item.where and "nothing to download" in item.where
