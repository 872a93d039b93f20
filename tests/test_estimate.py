"""Cost estimates: FLOPs counted on the meta device; cached probes cost one pass; ls shows the total."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tlbench.cells import expand
from tlbench.cli import main
from tlbench.preflight.estimate import cell_flops, forward_flops
from tlbench.spec import parse_grid


def test_forward_flops_match_the_published_figure():
    # ResNet-18 at 224: 1.82 GMACs = 3.64 GFLOPs (torchvision's model card)
    assert forward_flops("resnet18", 224) == pytest.approx(3.64e9, rel=0.03)
    assert forward_flops("resnet18", 112) == pytest.approx(forward_flops("resnet18", 224) / 4, rel=0.1)


def test_cell_costs_follow_strategy_epochs_and_subset():
    raw = {
        "train": {"epochs": 10, "image_size": 32},
        "datasets": [
            "cifar10",
            {"name": "cifar10", "train": {"subset": 0.1}},
            {"name": "imagefolder", "params": {"path": "/x"}},
        ],
        "backbones": [{"name": "test_resnet", "weights": "none"}],
        "strategies": ["linear_probe", "finetune"],
        "optimizers": ["sgd"],
        "augmentations": ["none"],
    }
    cost = {c.name: cell_flops(c) for c in expand(parse_grid(raw))}
    full = cost["cifar10/test_resnet/finetune/sgd/none"]
    assert cost["cifar10-10pct/test_resnet/finetune/sgd/none"] == pytest.approx(full / 10, rel=0.01)
    assert cost["cifar10/test_resnet/linear_probe/sgd/none"] < full / 20  # cached features: one pass
    assert cost["imagefolder/test_resnet/finetune/sgd/none"] is None  # size unknown until loaded


def test_ls_prints_the_total(write_grid):
    result = CliRunner().invoke(main, ["ls", "--grid", str(write_grid())])
    assert result.exit_code == 0
    assert "TFLOP of training" in result.output and "GPU-hours" in result.output


def test_torchvision_sets_and_sizes_are_estimated():
    from tlbench.preflight.estimate import train_images

    raw = {
        "train": {"epochs": 1},
        "datasets": [
            "dtd",  # its own val split: all 1880 train images
            "pets",  # val carved: 90 % of 3680
            {"name": "flowers102", "train": {"shots": 5}},
            {"name": "cifar100", "train": {"train_examples": 1000}},
        ],
        "backbones": [{"name": "test_resnet", "weights": "none"}],
        "strategies": ["finetune"],
        "optimizers": ["sgd"],
        "augmentations": ["none"],
    }
    n = {c.labels["dataset"]: train_images(c) for c in expand(parse_grid(raw))}
    assert n == {"dtd": 1880, "pets": 3312, "flowers102-5shot": 510, "cifar100-1000ex": 800}
