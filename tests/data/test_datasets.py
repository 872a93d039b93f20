"""Dataset loaders against real on-disk formats: digits, synthetic, Fashion-MNIST idx files."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from tlbench.data import CATALOG, DATASETS, DatasetNotFoundError, dataset_param_names, load_dataset
from tlbench.data import fashion as fashion_module
from tlbench.data.datasets import read_idx
from tlbench.registry import UnknownNameError


def _hashes(split) -> set[str]:
    return {
        hashlib.sha1(img.numpy().tobytes() + bytes([int(lbl)])).hexdigest()
        for img, lbl in zip(split.images, split.labels, strict=True)
    }


def test_registry_lists_the_first_datasets():
    assert {"digits", "synthetic", "fashion_mnist"} <= set(DATASETS.names())
    assert dataset_param_names("synthetic")["classes"] == 10
    assert dataset_param_names("digits") == {}


def test_every_catalog_entry_has_a_loader_with_the_catalogs_params():
    """The spec layer checks grids against the torch-free catalog; loading uses DATASETS."""
    assert DATASETS.names() == CATALOG.names()
    for name in CATALOG.names():
        assert DATASETS.get(name).params == CATALOG.get(name).params == dataset_param_names(name)
        assert DATASETS.get(name).description == CATALOG.get(name).description


def test_digits_splits():
    d = load_dataset("digits", seed=0)
    sizes = d.sizes()
    assert sum(sizes.values()) == 1797
    assert d.train.images.shape[1:] == (1, 8, 8) and d.train.images.dtype.is_floating_point is False
    assert d.num_classes == 10 and d.classes[3] == "3"
    assert int(d.train.images.max()) == 255
    assert "val" in d.notes


def test_digits_splits_disjoint_and_stable():
    a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=0)
    assert all(np.array_equal(getattr(a, s).labels, getattr(b, s).labels) for s in ("train", "val", "test"))
    # digits has a handful of duplicate images; compare (image, position) via index-free hashes of
    # train vs test only where they are unique
    train, test = _hashes(a.train), _hashes(a.test)
    assert len(train & test) <= 5
    other = load_dataset("digits", seed=1)
    assert np.array_equal(a.test.images.numpy(), other.test.images.numpy())  # test fixed across seeds
    assert not np.array_equal(a.val.images.numpy(), other.val.images.numpy())  # val follows the seed


def test_subset_is_stratified_and_leaves_val_test_alone():
    full = load_dataset("digits", seed=0)
    sub = load_dataset("digits", seed=0, subset=0.1)
    assert len(sub.train) == pytest.approx(0.1 * len(full.train), abs=10)
    assert set(sub.train.labels.tolist()) == set(range(10))
    assert len(sub.val) == len(full.val) and len(sub.test) == len(full.test)
    assert _hashes(sub.train) <= _hashes(full.train)


@pytest.mark.parametrize("bad", [0, -0.5, 1.5])
def test_subset_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="subset"):
        load_dataset("digits", subset=bad)


def test_synthetic_has_its_own_val_split():
    d = load_dataset(
        "synthetic", params={"classes": 3, "train_per_class": 5, "val_per_class": 2, "test_per_class": 4}
    )
    assert d.sizes() == {"train": 15, "val": 6, "test": 12}
    assert d.channels == 3 and "val" not in d.notes


def test_unknown_name_and_param():
    with pytest.raises(UnknownNameError, match="did you mean 'digits'"):
        load_dataset("digit")
    with pytest.raises(ValueError, match="valid: classes"):
        load_dataset("synthetic", params={"clases": 3})


def _write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _fake_fashion(folder: Path, n_train: int = 200, n_test: int = 20, gz: bool = True) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    _write_idx(folder / f"train-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_train, 28, 28)), gz)
    _write_idx(folder / f"train-labels-idx1-ubyte{suffix}", np.arange(n_train) % 10, gz)
    _write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_test, 28, 28)), gz)
    _write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", np.arange(n_test) % 10, gz)


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    monkeypatch.setattr(fashion_module, "DEBIAN_FASHION_MNIST", [tmp_path / "no-debian"])


def test_fashion_mnist_from_data_dir(tmp_path, no_debian):
    _fake_fashion(tmp_path / "data" / "fashion_mnist")
    d = load_dataset("fashion_mnist", data_dir=tmp_path / "data", download=False)
    assert d.sizes() == {"train": 180, "val": 20, "test": 20}
    assert d.train.images.shape[1:] == (1, 28, 28)
    assert d.classes[9] == "Ankle boot"
    assert d.source == str(tmp_path / "data" / "fashion_mnist")


def test_fashion_mnist_from_env_in_torchvision_layout_uncompressed(tmp_path, monkeypatch, no_debian):
    _fake_fashion(tmp_path / "env" / "FashionMNIST" / "raw", gz=False)
    monkeypatch.setenv("TLBENCH_DATA", str(tmp_path / "env"))
    assert len(load_dataset("fashion_mnist", download=False).test) == 20


def test_fashion_mnist_missing_says_where_it_looked(tmp_path, no_debian):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion_mnist", data_dir=tmp_path / "empty", download=False)
    text = str(info.value)
    assert str(tmp_path / "empty" / "fashion_mnist") in text
    assert str(tmp_path / "no-debian") in text
    assert "apt-get install dataset-fashion-mnist" in text


def test_truncated_idx_is_refused(tmp_path):
    _write_idx(tmp_path / "x-idx3-ubyte", np.zeros((4, 28, 28)), gz=False)
    raw = (tmp_path / "x-idx3-ubyte").read_bytes()
    (tmp_path / "x-idx3-ubyte").write_bytes(raw[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "x-idx3-ubyte")


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").exists(), reason="Debian's dataset-fashion-mnist absent"
)
def test_fashion_mnist_debian_copy(tmp_path):
    d = load_dataset("fashion_mnist", data_dir=tmp_path / "empty", download=False)
    assert d.sizes() == {"train": 54000, "val": 6000, "test": 10000}
    assert np.bincount(d.test.labels.numpy()).tolist() == [1000] * 10


def test_tensor_cache_is_reused_and_invalidated_when_the_source_changes(tmp_path, no_debian):
    folder = tmp_path / "data" / "fashion_mnist"
    _fake_fashion(folder)
    first = load_dataset("fashion_mnist", data_dir=tmp_path / "data", download=False)
    assert first.notes["cache"].startswith("written")
    cached = list((tmp_path / "data" / "tensors").glob("fashion_mnist-*.safetensors"))
    assert len(cached) == 1
    second = load_dataset("fashion_mnist", data_dir=tmp_path / "data", download=False)
    assert second.notes["cache"].startswith("hit")
    assert torch.equal(first.train.images, second.train.images) and torch.equal(
        first.test.labels, second.test.labels
    )
    assert second.classes == first.classes and second.source == first.source

    # the source changes: new images, so a new cache entry replaces the stale one
    rng = np.random.default_rng(1)
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28)))
    third = load_dataset("fashion_mnist", data_dir=tmp_path / "data", download=False)
    assert third.notes["cache"].startswith("written")
    assert not torch.equal(third.test.images, first.test.images)
    assert len(list((tmp_path / "data" / "tensors").glob("fashion_mnist-*.safetensors"))) == 1


def test_corrupt_cache_is_rebuilt(tmp_path):
    params = {"classes": 2, "train_per_class": 3, "val_per_class": 1, "test_per_class": 1, "image_size": 8}
    a = load_dataset("synthetic", params=params, data_dir=tmp_path)
    (path,) = (tmp_path / "tensors").glob("synthetic-*.safetensors")
    path.write_bytes(b"garbage")
    b = load_dataset("synthetic", params=params, data_dir=tmp_path)
    assert b.notes["cache"].startswith("written")
    assert torch.equal(a.train.images, b.train.images)
