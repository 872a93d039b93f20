"""CIFAR loaders against tiny files in the real python format; coarse labels; unsafe pickles."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from tlbench.data import DatasetNotFoundError, load_dataset
from tlbench.data.cifar import safe_load


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _cifar10(root, per_batch=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        _dump(
            folder / f"data_batch_{i}",
            {
                b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                b"labels": list(np.arange(per_batch) % 10),
            },
        )
    _dump(
        folder / "test_batch",
        {b"data": rng.integers(0, 256, (30, 3072), dtype=np.uint8), b"labels": list(np.arange(30) % 10)},
    )
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump(folder / "batches.meta", {b"label_names": [n.encode() for n in names]})


def _cifar100(root):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    fine = np.arange(400) % 100
    coarse = fine // 5  # a known mapping to check against
    _dump(
        folder / "train",
        {
            "data": rng.integers(0, 256, (400, 3072), dtype=np.uint8),
            "fine_labels": list(fine),
            "coarse_labels": list(coarse),
        },
    )
    _dump(
        folder / "test",
        {
            "data": rng.integers(0, 256, (200, 3072), dtype=np.uint8),
            "fine_labels": list(np.arange(200) % 100),
            "coarse_labels": list((np.arange(200) % 100) // 5),
        },
    )
    _dump(
        folder / "meta",
        {
            "fine_label_names": [f"fine{i}" for i in range(100)],
            "coarse_label_names": [f"super{i}" for i in range(20)],
        },
    )
    return fine, coarse


def test_cifar10(tmp_path):
    _cifar10(tmp_path)
    d = load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert d.sizes() == {"train": 90, "val": 10, "test": 30}  # 10% val carved from 100 train
    assert d.train.images.shape[1:] == (3, 32, 32)
    assert d.classes[3] == "cat"
    assert d.notes["cache"].startswith("written")
    assert load_dataset("cifar10", data_dir=tmp_path, download=False).notes["cache"].startswith("hit")


def test_cifar100_fine_and_coarse(tmp_path):
    fine, coarse = _cifar100(tmp_path)
    f = load_dataset("cifar100", data_dir=tmp_path, download=False, val_fraction=0.25)
    c = load_dataset("cifar100_coarse", data_dir=tmp_path, download=False, val_fraction=0.25)
    assert f.num_classes == 100 and c.num_classes == 20 and c.classes[19] == "super19"
    # the same images in the same order, labels mapped fine -> coarse
    assert np.array_equal(f.test.images.numpy(), c.test.images.numpy())
    assert np.array_equal(c.test.labels.numpy(), f.test.labels.numpy() // 5)
    # splits are disjoint: every train+val image is one of the 400 originals, none twice
    seen = {img.tobytes() for img in np.concatenate([c.train.images.numpy(), c.val.images.numpy()])}
    assert len(seen) == len(c.train) + len(c.val) == 400


def test_missing_cifar_names_the_fix(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert str(tmp_path / "cifar-10-batches-py") in str(info.value) and "prefetch" in str(info.value)


def test_a_tampered_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    _dump(tmp_path / "batch", {"data": Evil()})
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        safe_load(tmp_path / "batch")


def test_the_cifar_source_is_torchvisions_unless_overridden(monkeypatch):
    from torchvision.datasets import CIFAR100

    from tlbench.data.cifar import source

    for name in ("TLBENCH_CIFAR100_URL", "TLBENCH_CIFAR100_MD5"):
        monkeypatch.delenv(name, raising=False)
    assert source("cifar100") == (CIFAR100.url, CIFAR100.filename, CIFAR100.tgz_md5)
    monkeypatch.setenv("TLBENCH_CIFAR100_URL", "http://files.site/c100.tgz")
    assert source("cifar100")[::2] == ("http://files.site/c100.tgz", CIFAR100.tgz_md5)  # same file
    monkeypatch.setenv("TLBENCH_CIFAR100_MD5", "")
    assert source("cifar100")[2] is None
