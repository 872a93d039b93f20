"""The torchvision adapter against files in two datasets' own formats (DTD, Oxford-IIIT Pets), read
by torchvision's own classes; offline and by-hand failures are fast and name the folder."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torchvision.datasets
from helpers import write_dtd, write_pets

from tlbench.catalog.datasets import dataset_meta, dataset_param_names
from tlbench.catalog.torchvision import TORCHVISION_CLASSES, TORCHVISION_SETS
from tlbench.data import DatasetNotFoundError, load_dataset
from tlbench.preflight.prefetch import dataset_status
from tlbench.registry import UnknownNameError
from tlbench.spec import SpecError, parse_grid


def _rows(split) -> set[bytes]:
    return {
        bytes(x.numpy().tobytes()) + bytes([int(y)]) for x, y in zip(split.images, split.labels, strict=True)
    }


def test_dtd_official_splits_are_torchvision_s_and_the_cache_returns_them(tmp_path):
    write_dtd(tmp_path, classes=3, per_split=4)
    ds = load_dataset("dtd", data_dir=tmp_path, params={"image_size": 24})
    assert ds.sizes() == {"train": 12, "val": 12, "test": 12}  # DTD's own train1/val1/test1 files
    assert ds.classes == ["texture0", "texture1", "texture2"] and ds.train.images.shape[1:] == (3, 24, 24)
    assert "official train/val/test" in ds.params()["data.splits"] and "data.val" not in ds.params()
    tv = torchvision.datasets.DTD(str(tmp_path / "torchvision" / "DTD"), split="test")
    assert sorted(ds.test.labels.tolist()) == sorted(tv._labels)
    again = load_dataset("dtd", data_dir=tmp_path, params={"image_size": 24})
    assert again.notes["cache"].startswith("hit")
    for s in ("train", "val", "test"):
        assert torch.equal(getattr(ds, s).images, getattr(again, s).images)
    assert not (_rows(ds.train) & _rows(ds.test)) and not (_rows(ds.val) & _rows(ds.test))


def test_pets_val_is_carved_and_every_split_is_disjoint_and_stable(tmp_path):
    write_pets(tmp_path, breeds=3, trainval=12, test=5)
    a = load_dataset("pets", data_dir=tmp_path, params={"image_size": 16}, seed=3)
    b = load_dataset("torchvision:OxfordIIITPet", data_dir=tmp_path, params={"image_size": 16}, seed=3)
    assert a.sizes() == {"train": 33, "val": 3, "test": 15} == b.sizes()
    assert a.classes == ["Breed A", "Breed B", "Breed C"]
    assert a.params()["data.train_sha1"] == b.params()["data.train_sha1"]  # same draw, same digest
    assert "carved 10%" in a.params()["data.val"]
    other = load_dataset("pets", data_dir=tmp_path, params={"image_size": 16}, seed=4)
    assert other.params()["data.val_sha1"] != a.params()["data.val_sha1"]  # the seed draws the carve


def test_shots_are_exact_per_class_reproducible_and_drawn_per_seed(tmp_path):
    write_dtd(tmp_path, classes=3, per_split=6)
    load = lambda seed: load_dataset(  # noqa: E731
        "dtd", data_dir=tmp_path, params={"image_size": 8}, shots=2, seed=seed
    )
    a, b, c = load(0), load(0), load(1)
    assert np.bincount(a.train.labels.numpy()).tolist() == [2, 2, 2]
    assert len(a.val) == 18  # val as is
    assert a.params()["data.train_sha1"] == b.params()["data.train_sha1"] != c.params()["data.train_sha1"]
    assert torch.equal(a.train.images, b.train.images)
    with pytest.raises(ValueError, match="shots: 7 needs 7"):
        load_dataset("dtd", data_dir=tmp_path, params={"image_size": 8}, shots=7)


def test_train_examples_carve_train_and_val_from_official_train(tmp_path):
    write_pets(tmp_path, breeds=3, trainval=20, test=4)
    ds = load_dataset("pets", data_dir=tmp_path, params={"image_size": 8}, train_examples=30, seed=5)
    assert ds.sizes() == {"train": 24, "val": 6, "test": 12}  # 80/20 of 30; test untouched
    assert np.bincount(ds.train.labels.numpy()).tolist() == [8, 8, 8]
    assert not (_rows(ds.train) & _rows(ds.val))


def test_over_the_memory_budget_the_set_streams_with_the_same_pixels(tmp_path, monkeypatch):
    write_dtd(tmp_path, classes=2, per_split=3)
    cached = load_dataset("dtd", data_dir=tmp_path, params={"image_size": 16}, cache=False)
    monkeypatch.setenv("TLBENCH_STREAM", "always")
    streamed = load_dataset("dtd", data_dir=tmp_path, params={"image_size": 16})
    assert streamed.train.streamed and "streamed" in streamed.notes["loading"]
    assert torch.equal(streamed.test.images.decode(0), cached.test.images[0])


def test_offline_the_error_names_the_folder_and_prefetch_in_seconds(tmp_path, monkeypatch):
    monkeypatch.setenv("TLBENCH_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("flowers102", data_dir=tmp_path)  # download allowed, but offline
    assert time.perf_counter() - t0 < 10
    msg = str(info.value)
    assert str(tmp_path / "torchvision" / "Flowers102") in msg and "tlbench prefetch" in msg
    assert "TLBENCH_OFFLINE" in msg


def test_stanford_cars_must_be_placed_by_hand_and_says_where(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(DatasetNotFoundError, match="place it by hand") as info:
        load_dataset("stanford_cars", data_dir=tmp_path)
    assert str(tmp_path / "torchvision" / "StanfordCars") in str(info.value) and "devkit" in str(info.value)
    assert time.perf_counter() - t0 < 10
    cell = _cell("stanford_cars")
    st = dataset_status(cell, tmp_path)
    assert st.state == "manual" and not st.ok and "StanfordCars" in st.where


def _cell(name: str):
    from tlbench.cells import expand

    raw = {
        "datasets": [name],
        "backbones": [{"name": "test_resnet", "weights": "none"}],
        "strategies": ["scratch"],
        "optimizers": ["sgd"],
        "augmentations": ["none"],
    }
    return expand(parse_grid(raw))[0]


def test_status_says_local_and_what_torchvision_checks(tmp_path):
    write_dtd(tmp_path)
    assert dataset_status(_cell("dtd"), tmp_path).state == "local"
    flowers = dataset_status(_cell("flowers102"), tmp_path)
    assert flowers.state == "download" and "MD5" in flowers.where
    assert "no checksum" in dataset_status(_cell("fgvc_aircraft"), tmp_path).where


def test_the_catalog_matches_the_installed_torchvision():
    for name in TORCHVISION_CLASSES:
        assert hasattr(torchvision.datasets, name), name
    for name, tv in TORCHVISION_SETS.items():
        assert tv.cls in TORCHVISION_CLASSES and dataset_meta(name).train_images == tv.train_images
    assert dataset_param_names("torchvision:Flowers102") == dataset_param_names("flowers102")


def test_an_unknown_torchvision_class_is_a_spec_error_with_the_choices():
    with pytest.raises(UnknownNameError):
        dataset_meta("torchvision:Flowers101")
    raw = {
        "datasets": ["torchvision:Flowers101"],
        "backbones": ["test_resnet"],
        "strategies": ["scratch"],
        "optimizers": ["sgd"],
        "augmentations": ["none"],
    }
    with pytest.raises(SpecError) as info:
        parse_grid(raw, file="g.yaml")
    assert info.value.loc == "datasets[0].name" and "torchvision:Flowers102" in info.value.detail
