"""The streaming path: an ImageFolder larger than the memory budget, decoded per batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tlbench.cells import expand
from tlbench.data import load_dataset
from tlbench.data.stream import FileImages, image_batches, should_stream
from tlbench.spec import parse_grid
from tlbench.train import fit


def _tree(root, per_class=16, classes=("a", "b", "c")):
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 4), ("test", 4)):
        for ci, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 120, (20, 20, 3), dtype=np.uint8)
                arr[..., ci] += 120  # a channel per class: learnable in a few epochs
                Image.fromarray(arr).save(d / f"{i}.png")
    return root


def _load(root, data_dir):
    params = {"path": str(root), "image_size": 16}
    return load_dataset("imagefolder", params=params, data_dir=data_dir, subset=0.5)


@pytest.fixture
def tree(tmp_path):
    return _tree(tmp_path / "imgs")


def test_streamed_splits_hold_paths_and_decode_to_the_tensor_path_pixels(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("TLBENCH_STREAM", "never")
    resident = _load(tree, tmp_path / "d1")
    monkeypatch.setenv("TLBENCH_STREAM", "always")
    streamed = _load(tree, tmp_path / "d2")
    assert isinstance(streamed.train.images, FileImages) and streamed.train.streamed
    assert not resident.train.streamed and "loading" in streamed.notes
    assert streamed.sizes() == resident.sizes() and streamed.image_size == (16, 16)
    for name in ("train", "val", "test"):
        s, r = getattr(streamed, name), getattr(resident, name)
        assert torch.equal(s.labels, r.labels)  # the same carving and subset
        batches = [torch.arange(len(s)).flip(0)[:5], slice(0, 3)]
        got = list(image_batches(s.images, batches, torch.device("cpu")))
        assert [tuple(g.shape) for g in got] == [(5, 3, 16, 16), (3, 3, 16, 16)]
        assert torch.equal(got[0], r.images[batches[0]]) and torch.equal(got[1], r.images[0:3])
    assert list((tmp_path / "d1").rglob("*.safetensors"))  # the resident set was cached...
    assert not list((tmp_path / "d2").rglob("*.safetensors"))  # ...the streamed one was not


def test_auto_streams_only_above_the_memory_budget(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("TLBENCH_STREAM", "auto")
    monkeypatch.setenv("TLBENCH_MEMORY_BUDGET_GB", "1")
    assert not _load(tree, tmp_path).train.streamed
    assert should_stream(100_000, 224)  # 15 GB of pixels
    monkeypatch.setenv("TLBENCH_MEMORY_BUDGET_GB", "0.000001")  # ~1 kB: this tree is over it
    assert _load(tree, tmp_path).train.streamed
    monkeypatch.setenv("TLBENCH_STREAM", "sometimes")
    with pytest.raises(ValueError, match="auto, always, never"):
        should_stream(1, 1)


def _cell(root):
    raw = {
        "name": "s",
        "train": {"epochs": 3, "batch_size": 16, "image_size": 16, "lr": 0.05, "seed": 0},
        "datasets": [{"name": "imagefolder", "params": {"path": str(root), "image_size": 16}}],
        "backbones": [{"name": "test_resnet", "weights": "none"}],
        "strategies": ["scratch"],
        "optimizers": ["sgd"],
        "augmentations": ["basic"],  # random: exercises the per-batch augmentation on streamed pixels
    }
    return expand(parse_grid(raw))[0]


def test_a_streamed_cell_trains_exactly_like_the_tensor_resident_one(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("TLBENCH_LOADER_WORKERS", "2")  # real DataLoader worker processes
    cell = _cell(tree)
    results = {}
    for mode in ("never", "always"):
        monkeypatch.setenv("TLBENCH_STREAM", mode)
        data = load_dataset("imagefolder", params={"path": str(tree), "image_size": 16}, data_dir=tmp_path)
        started = {}
        results[mode] = fit(cell, data, device="cpu", reporter=_Start(started))
        results[mode].info["data_loading"] = started["data_loading"]
    assert results["never"].info["data_loading"] == "tensor"
    assert results["always"].info["data_loading"] == "streamed (2 workers)"
    a, b = results["never"], results["always"]
    assert [h["val_acc"] for h in a.history] == [h["val_acc"] for h in b.history]
    assert [h["train_loss"] for h in a.history] == pytest.approx([h["train_loss"] for h in b.history])
    assert a.test_acc == b.test_acc and a.test_acc > 1 / 3  # learned something, identically


class _Start:
    def __init__(self, into: dict):
        self.into = into

    def on_start(self, info):
        self.into.update(info)

    def on_epoch(self, epoch, metrics):
        pass
