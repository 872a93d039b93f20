"""The dataset registry and its loaders: each returns raw splits as uint8 tensors.

``load_dataset`` adds what every dataset shares: a val split carved from train where the source
has none (stratified, seeded), and a stratified ``subset`` of train. Loaders look for files
locally first and download only as a last resort, so offline machines work with a prepared cache.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlbench.data.base import DatasetNotFoundError, DatasetSplits, TensorSplit
from tlbench.data.splits import stratified_split, stratified_subset
from tlbench.data.stream import FileImages
from tlbench.registry import Registry

DEFAULT_DATA_DIR = Path("~/.cache/tlbench/data")
DEBIAN_FASHION_MNIST = [Path("/usr/share/datasets/fashion-mnist")]
DIGITS_TEST_SEED = 0  # the digits test split is fixed, whatever the grid's seed


@dataclass
class RawSplits:
    """What a loader returns; ``val`` is None when the source has no val split."""

    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    classes: list[str]
    source: str
    val: tuple[np.ndarray, np.ndarray] | None = None
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetInfo:
    loader: Callable[..., RawSplits]  # loader(data_dir: Path, download: bool, **params)
    params: dict[str, Any]  # allowed params and their defaults
    description: str
    # fingerprint(data_dir, **params) -> identity of the local source, or None (not cached / not found)
    fingerprint: Callable[..., str | None] | None = None


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def dataset_param_names(name: str) -> dict[str, Any]:
    """The params a dataset accepts, with their defaults."""
    return dict(DATASETS.get(name).params)


def data_root(data_dir: str | Path | None = None) -> Path:
    """``--data-dir`` > ``$TLBENCH_DATA`` > ``~/.cache/tlbench/data``."""
    chosen = data_dir or os.environ.get("TLBENCH_DATA") or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def load_dataset(
    name: str,
    *,
    params: dict[str, Any] | None = None,
    data_dir: str | Path | None = None,
    seed: int = 0,
    subset: float | None = None,
    val_fraction: float = 0.1,
    download: bool = True,
    cache: bool = True,
) -> DatasetSplits:
    """A dataset's train / val / test splits (val carved from train if needed; optional subset).

    With ``cache`` the decoded uint8 splits are kept under ``<data dir>/tensors`` and reused
    until the source changes.
    """
    info = DATASETS.get(name)
    if subset is not None and not 0 < subset <= 1:
        raise ValueError(f"subset is a fraction of train in (0, 1], got {subset}")
    params = dict(params or {})
    unknown = sorted(set(params) - set(info.params))
    if unknown:
        raise ValueError(
            f"dataset {name!r} has no param {unknown[0]!r} (valid: {', '.join(sorted(info.params)) or 'none'})"
        )
    raw = _load_raw(name, info, data_root(data_dir), download, {**info.params, **params}, cache)
    notes = dict(raw.notes)
    train_x, train_y = raw.train
    if raw.val is None:
        kept, taken = stratified_split(train_y, val_fraction, seed)
        val_x, val_y = train_x[taken], train_y[taken]
        train_x, train_y = train_x[kept], train_y[kept]
        notes["val"] = f"carved {val_fraction:.0%} of train (stratified, seed {seed})"
    else:
        val_x, val_y = raw.val
    if subset is not None and subset < 1:
        idx = stratified_subset(train_y, subset, seed)
        train_x, train_y = train_x[idx], train_y[idx]
        notes["subset"] = f"stratified {subset:.0%} of train: {len(idx)} images (seed {seed})"

    def split(x: np.ndarray | FileImages, y: np.ndarray) -> TensorSplit:
        images = x if isinstance(x, FileImages) else torch.from_numpy(np.ascontiguousarray(x))
        return TensorSplit(images, torch.from_numpy(y.astype(np.int64)))

    return DatasetSplits(
        name=name,
        train=split(train_x, train_y),
        val=split(val_x, val_y),
        test=split(*raw.test),
        classes=list(raw.classes),
        source=raw.source,
        notes=notes,
    )


def _load_raw(
    name: str, info: DatasetInfo, root: Path, download: bool, params: dict[str, Any], use_cache: bool
) -> RawSplits:
    """The loader's raw splits, through the tensor cache when the dataset has a fingerprint."""
    from tlbench.data.cache import cache_path, read_cache, write_cache

    fingerprint = info.fingerprint(root, **params) if (use_cache and info.fingerprint) else None
    if fingerprint:
        path = cache_path(root, name, params, fingerprint)
        hit = read_cache(path)
        if hit is not None:
            a, meta = hit["arrays"], hit["meta"]
            val = (a["val_x"], a["val_y"]) if "val_x" in a else None
            notes = {**meta.get("notes", {}), "cache": f"hit {path}"}
            return RawSplits(
                (a["train_x"], a["train_y"]),
                (a["test_x"], a["test_y"]),
                meta["classes"],
                meta["source"],
                val,
                notes,
            )
    raw = info.loader(root, download, **params)
    if use_cache and info.fingerprint:
        fingerprint = fingerprint or info.fingerprint(root, **params)  # a download just made the files
        if fingerprint:
            path = cache_path(root, name, params, fingerprint)
            arrays = {
                "train_x": raw.train[0],
                "train_y": raw.train[1],
                "test_x": raw.test[0],
                "test_y": raw.test[1],
            }
            if raw.val is not None:
                arrays.update(val_x=raw.val[0], val_y=raw.val[1])
            try:
                write_cache(path, arrays, {"classes": raw.classes, "source": raw.source, "notes": raw.notes})
                raw.notes = {**raw.notes, "cache": f"written {path}"}
            except OSError as err:  # a read-only data dir only costs speed
                raw.notes = {**raw.notes, "cache": f"not written ({err})"}
    return raw


# ---------------------------------------------------------------------------------------------
# digits


def _digits(data_dir: Path, download: bool) -> RawSplits:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(np.rint(d.images * (255 / 16)), 0, 255).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    labels = d.target.astype(np.int64)
    train_idx, test_idx = stratified_split(labels, 0.2, DIGITS_TEST_SEED)
    return RawSplits(
        train=(images[train_idx], labels[train_idx]),
        test=(images[test_idx], labels[test_idx]),
        classes=[str(i) for i in range(10)],
        source="scikit-learn load_digits",
        notes={"test": "fixed stratified 20% of the 1,797 images"},
    )


DATASETS.register(
    "digits",
    DatasetInfo(_digits, {}, "scikit-learn's 1,797 8x8 handwritten digits (offline); test = fixed 20%"),
)


# ---------------------------------------------------------------------------------------------
# synthetic


def _synthetic(
    data_dir: Path,
    download: bool,
    *,
    classes: int,
    train_per_class: int,
    val_per_class: int,
    test_per_class: int,
    image_size: int,
    seed: int,
) -> RawSplits:
    from tlbench.data.synthetic import generate

    if classes < 2 or min(train_per_class, val_per_class, test_per_class) < 1 or image_size < 8:
        raise ValueError(
            "synthetic needs classes >= 2, at least 1 image per class and split, image_size >= 8"
        )
    train = generate(classes, train_per_class, image_size, seed, split_seed=0)
    val = generate(classes, val_per_class, image_size, seed, split_seed=1)
    test = generate(classes, test_per_class, image_size, seed, split_seed=2)
    return RawSplits(
        train=train,
        val=val,
        test=test,
        classes=[f"ifs_{i:02d}" for i in range(classes)],
        source=f"generated (IFS fractals, seed {seed})",
    )


DATASETS.register(
    "synthetic",
    DatasetInfo(
        _synthetic,
        {
            "classes": 10,
            "train_per_class": 200,
            "val_per_class": 40,
            "test_per_class": 40,
            "image_size": 32,
            "seed": 0,
        },
        "procedural IFS-fractal images (FractalDB-style), deterministic, any size",
        fingerprint=lambda root, **p: f"synthetic-generator-{_synthetic_version()}",
    ),
)


def _synthetic_version() -> str:
    from tlbench.data.synthetic import GENERATOR_VERSION

    return GENERATOR_VERSION


# ---------------------------------------------------------------------------------------------
# fashion_mnist

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (gzipped or not): the MNIST family's raw format."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: {arr.size} bytes for shape {dims}")
    return arr.reshape(dims).copy()  # writable: torch refuses read-only buffers


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).exists():
            return folder / name
    return None


def fashion_mnist_candidates(data_dir: Path) -> list[Path]:
    return [data_dir / "fashion_mnist", data_dir / "FashionMNIST" / "raw", *DEBIAN_FASHION_MNIST]


def _find_fashion(data_dir: Path) -> dict[str, Path] | None:
    for folder in fashion_mnist_candidates(data_dir):
        files = {k: _find_idx(folder, v) for k, v in FASHION_FILES.items()}
        if all(files.values()):
            return files  # type: ignore[return-value]
    return None


def _fashion_fingerprint(data_dir: Path) -> str | None:
    from tlbench.data.cache import file_fingerprint

    files = _find_fashion(data_dir)
    return file_fingerprint(list(files.values())) if files else None


def _fashion_mnist(data_dir: Path, download: bool) -> RawSplits:
    candidates = fashion_mnist_candidates(data_dir)
    found = _find_fashion(data_dir)
    if found:
        files: dict[str, Path | None] = dict(found)
    else:
        files = {}
        if download:
            try:
                from torchvision.datasets import FashionMNIST

                FashionMNIST(root=str(data_dir), train=True, download=True)
                FashionMNIST(root=str(data_dir), train=False, download=True)
                folder = data_dir / "FashionMNIST" / "raw"
                files = {k: _find_idx(folder, v) for k, v in FASHION_FILES.items()}
            except Exception as err:  # no network, a mirror down, ...
                download_error = f"download failed: {type(err).__name__}: {err}"
            else:
                download_error = ""
        else:
            download_error = "download disabled"
        if not files or not all(files.values()):
            looked = "\n  ".join(str(c) for c in candidates)
            raise DatasetNotFoundError(
                f"fashion_mnist: no {', '.join(v + '[.gz]' for v in FASHION_FILES.values())} in any of:\n  {looked}\n"
                f"({download_error}). Get it with `apt-get install dataset-fashion-mnist`, put the four files in "
                f"{data_dir / 'fashion_mnist'} (or point --data-dir / TLBENCH_DATA elsewhere), or run once with internet."
            )
    arrays = {k: read_idx(p) for k, p in files.items() if p is not None}
    return RawSplits(
        train=(arrays["train_images"][:, None], arrays["train_labels"].astype(np.int64)),
        test=(arrays["test_images"][:, None], arrays["test_labels"].astype(np.int64)),
        classes=list(FASHION_CLASSES),
        source=str(files["train_images"].parent),  # type: ignore[union-attr]
    )


DATASETS.register(
    "fashion_mnist",
    DatasetInfo(
        _fashion_mnist,
        {},
        "Zalando's Fashion-MNIST, 60k/10k 28x28 grayscale (torchvision raw format)",
        fingerprint=_fashion_fingerprint,
    ),
)


# ---------------------------------------------------------------------------------------------
# CIFAR


def _cifar(kind: str, labels: str) -> Callable[..., RawSplits]:
    def loader(data_dir: Path, download: bool) -> RawSplits:
        from tlbench.data import cifar

        train, test, classes, source = cifar.load(data_dir, download, kind, labels)
        return RawSplits(train=train, test=test, classes=classes, source=source)

    return loader


def _cifar_fingerprint(kind: str) -> Callable[..., str | None]:
    def fp(data_dir: Path) -> str | None:
        from tlbench.data import cifar

        return cifar.fingerprint(data_dir, kind)

    return fp


for _name, _kind, _labels, _desc in (
    ("cifar10", "cifar10", "fine", "CIFAR-10, 50k/10k 32x32, 10 classes; val carved from train"),
    ("cifar100", "cifar100", "fine", "CIFAR-100, 50k/10k 32x32, 100 fine classes; val carved from train"),
    ("cifar100_coarse", "cifar100", "coarse", "CIFAR-100 with its 20 coarse superclasses (seed 003)"),
):
    DATASETS.register(
        _name, DatasetInfo(_cifar(_kind, _labels), {}, _desc, fingerprint=_cifar_fingerprint(_kind))
    )


# ---------------------------------------------------------------------------------------------
# image folders


def _imagefolder(
    data_dir: Path, download: bool, *, path: str | None, image_size: int, test_ratio: float
) -> RawSplits:
    from tlbench.data.folders import count_images, load_tree
    from tlbench.data.stream import should_stream

    if not path:
        raise ValueError("imagefolder needs params: {path: /folder/with/train/val/test or CLASS subfolders}")
    root = Path(path).expanduser()
    stream = root.is_dir() and should_stream(count_images(root), image_size)
    tree = load_tree(root, image_size, test_ratio, stream=stream)
    a = tree["arrays"]
    return RawSplits(
        train=a["train"],
        val=a.get("val"),
        test=a["test"],
        classes=tree["classes"],
        source=str(root),
        notes=tree["notes"],
    )


def _imagefolder_fingerprint(
    data_dir: Path, *, path: str | None, image_size: int, test_ratio: float
) -> str | None:
    from tlbench.data.folders import count_images, fingerprint
    from tlbench.data.stream import should_stream

    if not path:
        return None
    root = Path(path).expanduser()
    if root.is_dir() and should_stream(count_images(root), image_size):
        return None  # streamed sets are not decoded into the tensor cache
    return fingerprint(root)


DATASETS.register(
    "imagefolder",
    DatasetInfo(
        _imagefolder,
        {"path": None, "image_size": 64, "test_ratio": 0.1},
        "any ImageFolder tree (train/val/test subfolders, or CLASS folders split by ratio), stored at image_size",
        fingerprint=_imagefolder_fingerprint,
    ),
)


def _hymenoptera(data_dir: Path, download: bool, *, image_size: int) -> RawSplits:
    from tlbench.data.folders import hymenoptera_root, load_tree

    root = hymenoptera_root(data_dir, download)
    tree = load_tree(root, image_size, 0.1)
    a = tree["arrays"]
    return RawSplits(
        train=a["train"],
        val=a["val"],
        test=a["val"],
        classes=tree["classes"],
        source=str(root),
        notes={"test": "the tutorial has no test split: test = val (153 images)"},
    )


def _hymenoptera_fingerprint(data_dir: Path, *, image_size: int) -> str | None:
    from tlbench.data.folders import fingerprint

    return fingerprint(data_dir / "hymenoptera_data")


DATASETS.register(
    "hymenoptera",
    DatasetInfo(
        _hymenoptera,
        {"image_size": 256},
        "ants vs bees from the PyTorch transfer-learning tutorial (244 train / 153 val; test = val), seed 000",
        fingerprint=_hymenoptera_fingerprint,
    ),
)
