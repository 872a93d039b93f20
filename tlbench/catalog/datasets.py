"""What datasets and augmentations exist, and the params each dataset takes: metadata without torch.

The spec layer checks a grid's names and params against this catalog, and ``grid.expand`` fills
in the default params from it (they are part of every cell's id), without importing torch.
The loaders that turn an entry into tensors live in the per-family modules (``digits``,
``synthetic``, ``fashion``, ``cifar``, ``folders``) and are wired to these entries by
``datasets.py``, which refuses to import if a catalog entry has no loader or the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tlbench.catalog.torchvision import PREFIX, TORCHVISION_CLASSES, TORCHVISION_SETS, tv_set
from tlbench.errors import TlbenchError
from tlbench.registry import Registry, UnknownNameError

if TYPE_CHECKING:
    import numpy as np


class DatasetNotFoundError(TlbenchError, FileNotFoundError):
    """A dataset's files are missing: the message says where we looked and how to get them."""


@dataclass(frozen=True)
class DatasetMeta:
    """A dataset as a grid sees it: its name, the params it accepts (with defaults), what it is."""

    name: str
    params: dict[str, Any]
    description: str
    # the source has no test split and its test is its val split: test accuracy is then measured
    # on the images the best epoch was chosen on (optimistic); reports flag such datasets
    test_is_val: bool = False
    train_images: int | None = None  # train images before the val carve, for estimates (None: unknown)
    official_val: bool = False  # the source has a val split (no carve)
    fetch: str = "download"  # md5 | unchecked | manual (placed by hand) | download | none


@dataclass
class RawSplits:
    """What a loader returns (numpy arrays); ``val`` is None when the source has no val split."""

    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    classes: list[str]
    source: str
    val: tuple[np.ndarray, np.ndarray] | None = None
    notes: dict[str, str] = field(default_factory=dict)


CATALOG: Registry[DatasetMeta] = Registry("dataset")
for _meta in (
    DatasetMeta(
        "digits", {}, "scikit-learn's 1,797 8x8 handwritten digits (offline); test = fixed 20%", fetch="none"
    ),
    DatasetMeta(
        "synthetic",
        {
            "classes": 10,
            "train_per_class": 200,
            "val_per_class": 40,
            "test_per_class": 40,
            "image_size": 32,
            "seed": 0,
        },
        "procedural IFS-fractal images (FractalDB-style), deterministic, any size",
    ),
    DatasetMeta(
        "fashion_mnist", {}, "Zalando's Fashion-MNIST, 60k/10k 28x28 grayscale (torchvision raw format)"
    ),
    DatasetMeta("cifar10", {}, "CIFAR-10, 50k/10k 32x32, 10 classes; val carved from train"),
    DatasetMeta("cifar100", {}, "CIFAR-100, 50k/10k 32x32, 100 fine classes; val carved from train"),
    DatasetMeta("cifar100_coarse", {}, "CIFAR-100 with its 20 coarse superclasses (seed 003)"),
    DatasetMeta(
        "imagefolder",
        {"path": None, "image_size": 64, "test_ratio": 0.1},
        "any ImageFolder tree (train/val/test subfolders, or CLASS folders split by ratio), stored at image_size",
        fetch="none",  # local only: it exists where the user put it, nothing to download
    ),
    DatasetMeta(
        "hymenoptera",
        {"image_size": 256},
        "ants vs bees from the PyTorch transfer-learning tutorial (244 train / 153 val; test = val), seed 000",
        test_is_val=True,
    ),
):
    CATALOG.register(_meta.name, _meta)


for _name, _tv in TORCHVISION_SETS.items():
    CATALOG.register(
        _name,
        DatasetMeta(
            _name,
            {"image_size": _tv.image_size, **_tv.params},
            f"{_tv.description} (torchvision.datasets.{_tv.cls})",
            train_images=_tv.train_images,
            official_val="val" in _tv.splits,
            fetch=_tv.fetch,
        ),
    )


def dataset_meta(name: str) -> DatasetMeta:
    """A registered dataset, or ``torchvision:Class`` (``UnknownNameError`` with the choices otherwise)."""
    if not name.startswith(PREFIX):
        return CATALOG.get(name)
    tv = tv_set(name)
    if tv is None:
        raise UnknownNameError("torchvision dataset", name, [PREFIX + c for c in TORCHVISION_CLASSES])
    registered = next((n for n, e in TORCHVISION_SETS.items() if e is tv), None)
    if registered:  # torchvision:Flowers102 is flowers102 under another name
        return DatasetMeta(name, **{k: v for k, v in vars(CATALOG.get(registered)).items() if k != "name"})
    return DatasetMeta(name, {"image_size": tv.image_size}, tv.description)


def dataset_param_names(name: str) -> dict[str, Any]:
    """The params a dataset accepts, with their defaults (``UnknownNameError`` for an unknown name)."""
    return dict(dataset_meta(name).params)


@dataclass(frozen=True)
class AugmentationInfo:
    name: str
    random: bool  # False: deterministic, so frozen-backbone features could be cached
    description: str


AUGMENTATIONS: Registry[AugmentationInfo] = Registry("augmentation")
AUGMENTATIONS.register("none", AugmentationInfo("none", False, "resize to the input size + normalize"))
AUGMENTATIONS.register(
    "basic", AugmentationInfo("basic", True, "random crop with 1/8 padding + horizontal flip, then resize")
)
AUGMENTATIONS.register(
    "strong",
    AugmentationInfo(
        "strong", True, "basic + rotation ±15°, scale/translate/shear, brightness/contrast/saturation"
    ),
)
