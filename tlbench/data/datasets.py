"""The dataset registry and ``load_dataset``: raw splits from a family's loader, as uint8 tensors.

``load_dataset`` adds what every dataset shares: a val split carved from train where the source
has none (stratified, seeded), and a stratified ``subset`` of train. Loaders look for files
locally first and download only as a last resort, so offline machines work with a prepared cache.

What exists and which params each takes is the torch-free ``catalog``; the loaders live in one
module per family (``digits``, ``synthetic``, ``fashion``, ``cifar``, ``folders``). ``DATASETS``
pairs each catalog entry with its loader and cache fingerprint, and refuses to import when the
two disagree.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlbench.catalog.datasets import CATALOG, RawSplits, dataset_meta
from tlbench.catalog.datasets import DatasetNotFoundError as DatasetNotFoundError  # re-exported
from tlbench.catalog.datasets import dataset_param_names as dataset_param_names  # re-exported
from tlbench.catalog.torchvision import TORCHVISION_SETS, tv_set
from tlbench.data import cifar, digits, fashion, folders, synthetic, tvsets
from tlbench.data.base import DatasetSplits, FileImages, SourceRows, TensorSplit
from tlbench.data.cache import cache_path, read_cache, write_cache
from tlbench.data.fashion import FASHION_FILES as FASHION_FILES  # re-exported (benchmarks/perf)
from tlbench.data.fashion import _find_fashion as _find_fashion  # re-exported (benchmarks/perf)
from tlbench.data.fashion import read_idx as read_idx  # re-exported
from tlbench.data.sizes import draw
from tlbench.registry import Registry

DEFAULT_DATA_DIR = Path("~/.cache/tlbench/data")


@dataclass(frozen=True)
class DatasetInfo:
    loader: Callable[..., RawSplits]  # loader(data_dir: Path, download: bool, **params)
    params: dict[str, Any]  # allowed params and their defaults (from the catalog)
    description: str
    # fingerprint(data_dir, **params) -> identity of the local source, or None (not cached / not found)
    fingerprint: Callable[..., str | None] | None = None


DATASETS: Registry[DatasetInfo] = Registry("dataset")
_LOADERS: dict[str, tuple[Callable[..., RawSplits], Callable[..., str | None] | None]] = {
    "digits": (digits.load, None),  # ships with scikit-learn: nothing to cache
    "synthetic": (synthetic.load, synthetic.fingerprint),
    "fashion_mnist": (fashion.load, fashion.fingerprint),
    "cifar10": (cifar.loader("cifar10"), cifar.fingerprinter("cifar10")),
    "cifar100": (cifar.loader("cifar100"), cifar.fingerprinter("cifar100")),
    "cifar100_coarse": (cifar.loader("cifar100", "coarse"), cifar.fingerprinter("cifar100")),
    "imagefolder": (folders.load_imagefolder, folders.imagefolder_fingerprint),
    "hymenoptera": (folders.load_hymenoptera, folders.hymenoptera_fingerprint),
    **{n: (tvsets.loader(n), tvsets.fingerprinter(n)) for n in TORCHVISION_SETS},
}
if set(_LOADERS) != set(CATALOG):
    raise RuntimeError(
        f"the dataset catalog and its loaders disagree: no loader for {sorted(set(CATALOG) - set(_LOADERS))}, "
        f"not in the catalog: {sorted(set(_LOADERS) - set(CATALOG))}"
    )
for _name, (_loader, _fingerprint) in _LOADERS.items():
    _meta = CATALOG.get(_name)
    DATASETS.register(_name, DatasetInfo(_loader, dict(_meta.params), _meta.description, _fingerprint))


def dataset_info(name: str) -> DatasetInfo:
    """A registered dataset's loader, or the torchvision adapter for ``torchvision:Class``."""
    if name in DATASETS or tv_set(name) is None:
        return DATASETS.get(name)
    meta = dataset_meta(name)  # checks the class name
    return DatasetInfo(tvsets.loader(name), dict(meta.params), meta.description, tvsets.fingerprinter(name))


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
    shots: int | None = None,
    train_examples: int | None = None,
    val_fraction: float = 0.1,
    download: bool = True,
    cache: bool = True,
) -> DatasetSplits:
    """A dataset's train / val / test splits: val carved from train where the source has none,
    then at most one size (``subset`` fraction, ``shots`` per class, ``train_examples`` 80/20),
    drawn with ``seed`` (see ``sizes.draw``; the notes say what was drawn).

    With ``cache`` the decoded uint8 splits are kept under ``<data dir>/tensors`` and reused
    until the source changes.
    """
    info = dataset_info(name)
    params = dict(params or {})
    unknown = sorted(set(params) - set(info.params))
    if unknown:
        raise ValueError(
            f"dataset {name!r} has no param {unknown[0]!r} (valid: {', '.join(sorted(info.params)) or 'none'})"
        )
    raw = _load_raw(name, info, data_root(data_dir), download, {**info.params, **params}, cache)
    train_x, train_y = raw.train
    sizes = {"subset": subset, "shots": shots, "train_examples": train_examples}
    drawn = draw(train_y, raw.val is not None, seed=seed, val_fraction=val_fraction, **sizes)
    notes = {**raw.notes, **drawn.notes}
    val_x, val_y = raw.val if drawn.val is None else (train_x[drawn.val], train_y[drawn.val])
    train_x, train_y = train_x[drawn.train], train_y[drawn.train]

    def split(x: np.ndarray | FileImages, y: np.ndarray) -> TensorSplit:
        images = x if isinstance(x, FileImages) else torch.from_numpy(np.ascontiguousarray(x))
        return TensorSplit(images, torch.from_numpy(y.astype(np.int64)))

    root = data_root(data_dir)
    known = info.fingerprint(root, **{**info.params, **params}) if info.fingerprint else None
    origin = SourceRows(  # "" fingerprint: the feature store hashes the pixels instead
        fingerprint=f"{name}|{sorted(params.items())}|{known}" if known else "",
        root=root,
        train=split(*raw.train),
        train_rows=drawn.train,
        val=split(*raw.val) if raw.val is not None else None,
        val_rows=drawn.val,
    )
    return DatasetSplits(
        name=name,
        train=split(train_x, train_y),
        val=split(val_x, val_y),
        test=split(*raw.test),
        classes=list(raw.classes),
        source=raw.source,
        notes=notes,
        origin=origin,
    )


def _load_raw(
    name: str, info: DatasetInfo, root: Path, download: bool, params: dict[str, Any], use_cache: bool
) -> RawSplits:
    """The loader's raw splits, through the tensor cache when the dataset has a fingerprint."""
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
