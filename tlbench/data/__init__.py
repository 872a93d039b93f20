"""Datasets as uint8 tensors split three ways, and the batched on-device augmentation."""

from tlbench.data.augment import AUGMENTATIONS, make_augment
from tlbench.data.base import DatasetNotFoundError, DatasetSplits, TensorSplit
from tlbench.data.datasets import DATASETS, dataset_param_names, load_dataset

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "DatasetNotFoundError",
    "DatasetSplits",
    "TensorSplit",
    "dataset_param_names",
    "load_dataset",
    "make_augment",
]
