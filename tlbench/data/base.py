"""What every dataset loader returns: uint8 image tensors with labels, split three ways.

Images stay uint8 (N, C, H, W) on the CPU until the trainer moves them to the training device;
augmentation, resizing to the backbone's input size and normalization happen there, batched
(see ``augment.py``). Keeping the whole set as one tensor is what lets the hot loop index batches
instead of decoding samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from tlbench.data.stream import FileImages


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing: the message says where we looked and how to get them."""


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
class DatasetSplits:
    """Train / val / test of one dataset, with its class names and where it came from."""

    name: str
    train: TensorSplit
    val: TensorSplit
    test: TensorSplit
    classes: list[str]
    source: str = ""  # where the data was read from (a path, "generated", "scikit-learn")
    notes: dict[str, str] = field(default_factory=dict)  # e.g. {"val": "carved from train (seed 0)"}

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
