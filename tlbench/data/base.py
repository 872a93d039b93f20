"""What ``load_dataset`` returns: uint8 image tensors with labels, split three ways.

Images stay uint8 (N, C, H, W) on the CPU until the trainer moves them to the training device;
augmentation, resizing to the backbone's input size and normalization happen there, batched
(see ``augment.py``). Keeping the whole set as one tensor is what lets the hot loop index batches
instead of decoding samples. A set too large for memory keeps file paths instead
(``FileImages``), decoded batch by batch (``stream.py``) with the same ``decode_image`` the
folder loader uses, so both paths give the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlbench.catalog.datasets import DatasetNotFoundError as DatasetNotFoundError  # re-exported


def decode_image(path: Path, size: int) -> np.ndarray:
    """RGB uint8 (3, size, size): shorter side resized to ``size``, centre crop."""
    from PIL import Image

    with Image.open(path) as im:
        return square_pixels(im, size)


def square_pixels(im: Any, size: int) -> np.ndarray:
    """A PIL image as RGB uint8 (3, size, size): shorter side resized to ``size``, centre crop
    (one rule for files, torchvision's in-memory images and the streamed path)."""
    from PIL import Image

    im = im.convert("RGB")
    w, h = im.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        im = im.crop((left, top, left + size, top + size))
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))  # writable


class FileImages:
    """Images as file paths, decoded on demand to ``size``×``size`` RGB uint8 (like the cache).

    Indexing with an index array or slice gives the subset (how val/test/subset splits are
    carved); ``decode`` gives pixels.
    """

    dtype = torch.uint8
    ndim = 4

    def __init__(self, paths: Sequence[str | Path], size: int):
        self.paths = np.asarray([str(p) for p in paths], dtype=object)
        self.size = int(size)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), 3, self.size, self.size)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # pixels are made on the host, batch by batch

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: Any) -> FileImages:
        if isinstance(idx, torch.Tensor):
            idx = idx.cpu().numpy()
        picked = self.paths[idx]
        return FileImages(picked if isinstance(picked, np.ndarray) else [picked], self.size)

    def decode(self, i: int) -> torch.Tensor:
        return torch.from_numpy(decode_image(Path(self.paths[i]), self.size))


@dataclass
class TensorSplit:
    """One split: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor | FileImages  # FileImages: a set streamed from disk (see stream.py)
    labels: torch.Tensor

    @property
    def streamed(self) -> bool:
        return not isinstance(self.images, torch.Tensor)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise ValueError("labels must be 1-d and as long as images")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class SourceRows:
    """Where a cell's train and val rows come from: the *uncarved* source splits and the drawn
    indices into them, so a feature store can extract a source split once and serve every val
    carve, subset, shots or replicate draw of it by index (``val_rows`` None: the source's own
    val split is used as is; test is never drawn from)."""

    fingerprint: str  # identity of the source (name, params, files or generator version)
    root: Path  # the data dir: the feature store lives beside its tensor cache
    train: TensorSplit
    train_rows: np.ndarray
    val: TensorSplit | None = None
    val_rows: np.ndarray | None = None


@dataclass
class DatasetSplits:
    """Train / val / test of one dataset, with its class names and where it came from."""

    name: str
    train: TensorSplit
    val: TensorSplit
    test: TensorSplit
    classes: list[str]
    source: str = ""  # where the data was read from (a path, "generated", "scikit-learn")
    notes: dict[str, str] = field(default_factory=dict)  # e.g. {"val": "carved from train (seed 0)"}
    origin: SourceRows | None = field(default=None, repr=False)  # the uncarved source (feature store)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def params(self) -> dict[str, str]:
        """What a run records about its data (``data.*``): official splits, carves, drawn subsets and
        their digests; replicates that drew the same images share ``data.train_sha1``."""
        return {f"data.{k}": v for k, v in self.notes.items() if k != "cache"}
