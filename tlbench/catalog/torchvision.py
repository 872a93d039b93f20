"""torchvision's classification datasets as tlbench names: their splits, sizes and how they arrive.

Torch-free metadata (the spec layer, ``tlbench ls`` and the estimates read it without importing
torchvision); ``tvsets.py`` turns an entry into tensors. A registered short name (``flowers102``)
says which torchvision class, which of its official splits become train / val / test, and where
the source has none, how the missing one is carved (fixed seed, said in the notes). Any other
class is reachable as ``torchvision:ClassName``, with splits found from its ``split`` or
``train`` argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_IMAGE_SIZE = 256  # stored short side (centre square): enough for 224 crops

# how the files arrive: torchvision downloads and checks their MD5 / downloads without a
# checksum / cannot download any more (placed by hand)
MD5, UNCHECKED, MANUAL = "md5", "unchecked", "manual"


@dataclass(frozen=True)
class TvSet:
    """One torchvision dataset as tlbench loads it."""

    cls: str  # the class in torchvision.datasets
    description: str
    splits: dict[str, dict[str, Any]]  # "train" / "val" / "test" -> the class's split kwargs
    classes: int
    train_images: int  # the official train split (before any val carve), for the estimates
    fetch: str = MD5
    image_size: int = DEFAULT_IMAGE_SIZE
    url: str = ""  # probed before a download, so an offline machine fails in seconds
    kwargs: dict[str, Any] = field(default_factory=dict)  # fixed constructor args
    params: dict[str, Any] = field(default_factory=dict)  # extra grid params passed to the class
    # no test split: carve it with a fixed seed, a fraction of every class, or (train, test) per class
    carve_test: float | tuple[int, int | None] | None = None
    layout: str = ""  # what a folder placed by hand must hold (under <data dir>/torchvision/<cls>/)


_OX = "https://www.robots.ox.ac.uk/"
TORCHVISION_SETS: dict[str, TvSet] = {
    "flowers102": TvSet(
        "Flowers102",
        "Oxford Flowers-102: 102 classes, official train/val/test 1020/1020/6149",
        {"train": {"split": "train"}, "val": {"split": "val"}, "test": {"split": "test"}},
        102,
        1020,
        url=_OX,
    ),
    "dtd": TvSet(
        "DTD",
        "Describable Textures: 47 classes, official train/val/test 1880 each (partition 1-10)",
        {"train": {"split": "train"}, "val": {"split": "val"}, "test": {"split": "test"}},
        47,
        1880,
        url=_OX,
        params={"partition": 1},
    ),
    "pets": TvSet(
        "OxfordIIITPet",
        "Oxford-IIIT Pets: 37 breeds, official trainval/test 3680/3669; val carved from trainval",
        {"train": {"split": "trainval"}, "test": {"split": "test"}},
        37,
        3680,
        url=_OX,
        kwargs={"target_types": "category"},
    ),
    "food101": TvSet(
        "Food101",
        "Food-101: 101 classes, official train/test 75750/25250; val carved from train",
        {"train": {"split": "train"}, "test": {"split": "test"}},
        101,
        75_750,
        url="http://data.vision.ee.ethz.ch/",
    ),
    "fgvc_aircraft": TvSet(
        "FGVCAircraft",
        "FGVC Aircraft: 100 variants (annotation_level), official train/val/test 3334/3333/3333",
        {"train": {"split": "train"}, "val": {"split": "val"}, "test": {"split": "test"}},
        100,
        3334,
        fetch=UNCHECKED,
        url=_OX,
        params={"annotation_level": "variant"},
    ),
    "stanford_cars": TvSet(
        "StanfordCars",
        "Stanford Cars: 196 classes, official train/test 8144/8041; placed by hand (no download)",
        {"train": {"split": "train"}, "test": {"split": "test"}},
        196,
        8144,
        fetch=MANUAL,
        layout="stanford_cars/{cars_train/, cars_test/, cars_test_annos_withlabels.mat, "
        "devkit/{cars_meta.mat, cars_train_annos.mat}}",
    ),
    "caltech101": TvSet(
        "Caltech101",
        "Caltech-101: 101 classes (no background), 30 train per class, the rest test (fixed seed)",
        {"train": {}},
        101,
        3030,
        url="https://data.caltech.edu/",
        kwargs={"target_type": "category"},
        carve_test=(30, None),
    ),
    "sun397": TvSet(
        "SUN397",
        "SUN397: 397 scene classes, 50 train + 50 test per class drawn once (fixed seed)",
        {"train": {}},
        397,
        19_850,
        url="http://vision.princeton.edu/",
        carve_test=(50, 50),
    ),
    "eurosat": TvSet(
        "EuroSAT",
        "EuroSAT RGB: 10 land-use classes, 27k 64x64; test 20 % carved (fixed seed)",
        {"train": {}},
        10,
        21_600,
        image_size=64,
        url="https://huggingface.co/",
        carve_test=0.2,
    ),
    "gtsrb": TvSet(
        "GTSRB",
        "German traffic signs: 43 classes, official train/test 26640/12630, stored at 64",
        {"train": {"split": "train"}, "test": {"split": "test"}},
        43,
        26_640,
        image_size=64,
        url="https://sid.erda.dk/",
    ),
    "svhn": TvSet(
        "SVHN",
        "Street View House Numbers: 10 digits, official train/test 73257/26032, 32x32",
        {"train": {"split": "train"}, "test": {"split": "test"}},
        10,
        73_257,
        image_size=32,
        url="http://ufldl.stanford.edu/",
    ),
    "stl10": TvSet(
        "STL10",
        "STL-10: 10 classes, official train/test 5000/8000, 96x96",
        {"train": {"split": "train"}, "test": {"split": "test"}},
        10,
        5000,
        image_size=96,
        url="http://ai.stanford.edu/",
    ),
    "pcam": TvSet(
        "PCAM",
        "PatchCamelyon: 2 classes, official train/val/test 262144/32768/32768, 96x96 (needs h5py, gdown)",
        {"train": {"split": "train"}, "val": {"split": "val"}, "test": {"split": "test"}},
        2,
        262_144,
        image_size=96,
        url="https://drive.google.com/",
    ),
    "country211": TvSet(
        "Country211",
        "Country211 (CLIP): 211 countries, official train/valid/test 31650/10550/21100",
        {"train": {"split": "train"}, "val": {"split": "valid"}, "test": {"split": "test"}},
        211,
        31_650,
        url="https://openaipublic.azureedge.net/",
    ),
}

# torchvision.datasets classes with one class label per image (``torchvision:NAME``); a test
# checks that each still exists in the installed torchvision
TORCHVISION_CLASSES = (
    "CIFAR10",
    "CIFAR100",
    "Caltech101",
    "Caltech256",
    "Country211",
    "DTD",
    "EuroSAT",
    "FER2013",
    "FGVCAircraft",
    "FashionMNIST",
    "Flowers102",
    "Food101",
    "GTSRB",
    "Imagenette",
    "KMNIST",
    "MNIST",
    "OxfordIIITPet",
    "PCAM",
    "QMNIST",
    "RenderedSST2",
    "SEMEION",
    "STL10",
    "SUN397",
    "SVHN",
    "StanfordCars",
    "USPS",
)
PREFIX = "torchvision:"


def tv_set(name: str) -> TvSet | None:
    """The entry of a registered name or ``torchvision:Class``; None for other datasets.

    ``torchvision:Flowers102`` is the same as ``flowers102``; an unregistered class gets splits
    found at load time and a test carve of 20 % where it has no test split.
    """
    if name in TORCHVISION_SETS:
        return TORCHVISION_SETS[name]
    if not name.startswith(PREFIX):
        return None
    cls = name[len(PREFIX) :]
    for entry in TORCHVISION_SETS.values():
        if entry.cls == cls:
            return entry
    if cls not in TORCHVISION_CLASSES:
        return None
    return TvSet(cls, f"torchvision.datasets.{cls} (splits found from its arguments)", {}, 0, 0)
