"""ImageFolder trees and the hymenoptera zip, in their real on-disk formats."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image

from tlbench.data import DatasetNotFoundError, load_dataset


def _tree(root, splits=("train", "val"), classes=("ants", "bees"), per_class=6, size=(40, 30)):
    rng = np.random.default_rng(0)
    for split in splits:
        for ci, cls in enumerate(classes):
            d = root / split / cls if split else root / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                arr[..., ci] = 255  # each class has a channel of its own
                Image.fromarray(arr).save(d / f"{i}.{'jpg' if i % 2 else 'png'}")


def test_imagefolder_with_split_folders(tmp_path):
    _tree(tmp_path / "imgs", splits=("train", "val", "test"))
    d = load_dataset(
        "imagefolder", params={"path": str(tmp_path / "imgs"), "image_size": 24}, data_dir=tmp_path
    )
    assert d.sizes() == {"train": 12, "val": 12, "test": 12}
    assert d.classes == ["ants", "bees"] and d.train.images.shape[1:] == (3, 24, 24)
    assert (d.train.images[d.train.labels == 1][:, 1].float().mean() > 200).item()  # bees: green channel


def test_imagefolder_single_folder_split_by_ratio(tmp_path):
    _tree(tmp_path / "flat", splits=("",), per_class=20)
    d = load_dataset(
        "imagefolder", params={"path": str(tmp_path / "flat"), "test_ratio": 0.25}, data_dir=tmp_path
    )
    assert d.sizes()["test"] == 10 and sum(d.sizes().values()) == 40
    assert "test" in d.notes and "val" in d.notes
    again = load_dataset(
        "imagefolder", params={"path": str(tmp_path / "flat"), "test_ratio": 0.25}, data_dir=tmp_path
    )
    assert np.array_equal(d.test.images.numpy(), again.test.images.numpy())


def test_imagefolder_needs_a_path(tmp_path):
    with pytest.raises(ValueError, match="needs params"):
        load_dataset("imagefolder", data_dir=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="is not a folder"):
        load_dataset("imagefolder", params={"path": str(tmp_path / "nope")}, data_dir=tmp_path)


def test_hymenoptera_from_the_zip(tmp_path):
    src = tmp_path / "src"
    _tree(src / "hymenoptera_data", splits=("train", "val"), per_class=5)
    data = tmp_path / "data"
    data.mkdir()
    with zipfile.ZipFile(data / "hymenoptera_data.zip", "w") as z:
        for f in sorted((src / "hymenoptera_data").rglob("*")):
            z.write(f, f.relative_to(src))
    d = load_dataset("hymenoptera", params={"image_size": 32}, data_dir=data, download=False)
    assert d.sizes() == {"train": 10, "val": 10, "test": 10}
    assert np.array_equal(d.val.images.numpy(), d.test.images.numpy())  # test = val, as the tutorial
    assert "test = val" in d.notes["test"]
    assert (data / "hymenoptera_data" / "train").is_dir()


def test_hymenoptera_missing_says_where(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("hymenoptera", data_dir=tmp_path, download=False)
    assert "hymenoptera_data.zip" in str(info.value)


def test_a_broken_hymenoptera_zip_is_named_with_the_fix(tmp_path):
    (tmp_path / "hymenoptera_data.zip").write_bytes(b"<html>a captive portal, not a zip</html>")
    with pytest.raises(DatasetNotFoundError, match="is not a zip .*delete it"):
        load_dataset("hymenoptera", data_dir=tmp_path, download=False)


def test_the_hymenoptera_url_can_be_a_mirror(monkeypatch):
    from tlbench.data.folders import HYMENOPTERA_URL, hymenoptera_url

    monkeypatch.delenv("TLBENCH_HYMENOPTERA_URL", raising=False)
    assert hymenoptera_url() == (HYMENOPTERA_URL, None)  # PyTorch publishes no MD5 for it
    monkeypatch.setenv("TLBENCH_HYMENOPTERA_URL", "http://files.site/h.zip")
    monkeypatch.setenv("TLBENCH_HYMENOPTERA_MD5", "ab" * 16)
    assert hymenoptera_url() == ("http://files.site/h.zip", "ab" * 16)
