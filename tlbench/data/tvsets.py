"""torchvision's dataset classes as raw splits: one adapter for every entry of ``tvcatalog``.

Each split is opened with torchvision's own class (``download=False`` first), so its official
split files decide what is train, val and test; the file paths and labels it lists are decoded
once to the stored size (short side, centre square) and go to the tensor cache, or stay paths
(``FileImages``) when the set is over the memory budget, like ``imagefolder``. Array-backed sets
(SVHN, STL-10, PCAM) are read through the class. Files live in
``<data dir>/torchvision/<Class>/`` (torchvision's own layout below that). A download happens
only when allowed, not switched off and the source answers a HEAD through the environment's
proxy, as the download will (``fetching``); otherwise the error names the folder, the URL and
proxy tried and ``tlbench prefetch``, within seconds.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tlbench.catalog.datasets import DatasetNotFoundError, RawSplits
from tlbench.catalog.torchvision import MANUAL, TvSet, tv_set
from tlbench.data.base import FileImages, decode_image, square_pixels
from tlbench.data.fetching import download_blocker, socket_timeout
from tlbench.data.folders import count_images
from tlbench.data.splits import carve_test
from tlbench.data.stream import should_stream

GENERIC_TEST = 0.2  # the test fraction carved for a torchvision:Class without a test split
_SPLIT_VALUES = {"train": ("train", "trainval", "training"), "val": ("val", "valid", "validation")}
_SPLIT_VALUES["test"] = ("test", "testing")


def tv_root(data_dir: Path, tv: TvSet) -> Path:
    """Where a torchvision class keeps its files: ``<data dir>/torchvision/<Class>``."""
    return data_dir / "torchvision" / tv.cls


def _entry(name: str) -> TvSet:
    tv = tv_set(name)
    if tv is None:
        raise ValueError(f"{name!r} is not a torchvision dataset")
    return tv


def _class(tv: TvSet) -> Any:
    import torchvision.datasets

    return getattr(torchvision.datasets, tv.cls)


def missing_error(name: str, tv: TvSet, root: Path, reason: str) -> DatasetNotFoundError:
    """What to do about a dataset that is not here: place it by hand, or prefetch it."""
    if tv.fetch == MANUAL:
        return DatasetNotFoundError(
            f"{name}: torchvision can no longer download {tv.cls}; place it by hand in {root}/ "
            f"({tv.layout}); `tlbench validate` then finds it"
        )
    return DatasetNotFoundError(
        f"{name}: torchvision's {tv.cls} files are not in {root}/ ({reason}). Run `tlbench prefetch --grid "
        "GRID` with the same --data-dir / $TLBENCH_DATA on a machine with internet, then copy that folder here"
    )


def _first_url(cls: Any) -> str:
    """The first http(s) URL among a class's attributes (to probe before a generic download)."""
    stack: list[Any] = list(vars(cls).values())
    while stack:
        v = stack.pop(0)
        if isinstance(v, str) and v.startswith(("http://", "https://")):
            return v
        if isinstance(v, (tuple, list)):
            stack += list(v)
        elif isinstance(v, dict):
            stack += list(v.values())
    return ""


def open_split(name: str, tv: TvSet, root: Path, kwargs: dict[str, Any], download: bool) -> Any:
    """torchvision's object for one split: from local files, else downloaded when that can work."""
    cls = _class(tv)
    args = {**tv.kwargs, **kwargs}
    try:
        return cls(str(root), download=False, **args)
    except (RuntimeError, FileNotFoundError) as err:  # torchvision: "Dataset not found ..."
        local = f"{type(err).__name__}: {err}"
    if tv.fetch == MANUAL:
        raise missing_error(name, tv, root, local)
    if not download:
        raise missing_error(name, tv, root, "download disabled")
    blocker = download_blocker(tv.url or _first_url(cls))
    if blocker:
        raise missing_error(name, tv, root, blocker)
    root.mkdir(parents=True, exist_ok=True)
    try:
        with socket_timeout():
            return cls(str(root), download=True, **args)
    except Exception as err:  # a mirror down, a checksum mismatch, a stalled transfer
        raise missing_error(name, tv, root, f"download failed: {type(err).__name__}: {err}") from err


def split_kwargs(name: str, tv: TvSet, root: Path, download: bool) -> dict[str, dict[str, Any]]:
    """tlbench split -> the class's kwargs: the catalog's, or found from a ``split`` / ``train`` arg."""
    if tv.splits:
        return tv.splits
    params = inspect.signature(_class(tv).__init__).parameters
    if "train" in params:
        return {"train": {"train": True}, "test": {"train": False}}
    if "split" not in params:
        return {"train": {}}
    found: dict[str, dict[str, Any]] = {}
    for split, values in _SPLIT_VALUES.items():
        for value in values:
            try:
                open_split(name, tv, root, {"split": value}, download)
            except ValueError:  # torchvision's verify_str_arg: not one of this class's splits
                continue
            found[split] = {"split": value}
            break
    if "test" not in found and "val" in found:  # e.g. Imagenette: its val is the held-out set
        found["test"] = found.pop("val")
    return found


def _paths_labels(ds: Any) -> tuple[list[Path] | None, np.ndarray | None]:
    """The file of every image and its label, where the class lists them (most do)."""
    for paths, labels in (("_image_files", "_labels"), ("_images", "_labels")):
        if hasattr(ds, paths) and hasattr(ds, labels):
            return [Path(p) for p in getattr(ds, paths)], np.asarray(getattr(ds, labels), dtype=np.int64)
    for attr in ("_samples", "samples"):
        samples = getattr(ds, attr, None)
        if isinstance(samples, list) and samples and isinstance(samples[0], tuple):
            return [Path(p) for p, _ in samples], np.asarray([y for _, y in samples], dtype=np.int64)
    if type(ds).__name__ == "Caltech101":
        folder = Path(ds.root) / "101_ObjectCategories"
        paths = [
            folder / ds.categories[y] / f"image_{i:04d}.jpg" for i, y in zip(ds.index, ds.y, strict=True)
        ]
        return paths, np.asarray(ds.y, dtype=np.int64)
    return None, None


def _pixels(ds: Any, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every image of an array-backed set at ``size`` (its own array when already that shape)."""
    data, labels = getattr(ds, "data", None), getattr(ds, "labels", None)
    shaped = isinstance(data, np.ndarray) and data.shape[1:] == (3, size, size) and data.dtype == np.uint8
    if shaped and labels is not None:
        return np.ascontiguousarray(data), np.asarray(labels, dtype=np.int64)
    images, ys = [], []
    for i in range(len(ds)):
        im, y = ds[i]
        images.append(square_pixels(im, size))
        ys.append(int(y))
    x = np.stack(images) if images else np.zeros((0, 3, size, size), dtype=np.uint8)
    return x, np.asarray(ys, dtype=np.int64)


def _decode(paths: list[Path], size: int) -> np.ndarray:
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL releases the GIL
        images = list(pool.map(lambda p: decode_image(p, size), paths))
    return np.stack(images) if images else np.zeros((0, 3, size, size), dtype=np.uint8)


def _class_names(ds: Any, labels: np.ndarray) -> list[str]:
    names = getattr(ds, "classes", None) or getattr(ds, "categories", None)
    n = int(labels.max()) + 1 if len(labels) else 0
    if isinstance(names, list) and len(names) >= n and all(isinstance(c, str) for c in names):
        return list(names)
    return [str(i) for i in range(n)]


def _carve_test(tv: TvSet, splits: dict[str, tuple[Any, np.ndarray]]) -> str:
    """A test split carved from train with a fixed seed, where the source has none; the note."""
    x, y = splits["train"]
    keep, take, how = carve_test(y, tv.carve_test if tv.carve_test is not None else GENERIC_TEST)
    splits["train"], splits["test"] = (x[keep], y[keep]), (x[take], y[take])
    return f"no official test split: {how}"


def load(data_dir: Path, download: bool, *, name: str, image_size: int, **params: Any) -> RawSplits:
    """The dataset's splits as arrays (or ``FileImages`` when streamed), with what was official."""
    tv = _entry(name)
    root = tv_root(data_dir, tv)
    kwargs = split_kwargs(name, tv, root, download)
    if "train" not in kwargs:
        raise DatasetNotFoundError(f"{name}: torchvision.datasets.{tv.cls} has no train split we can find")
    opened = {s: open_split(name, tv, root, {**kw, **params}, download) for s, kw in kwargs.items()}
    listed = {s: _paths_labels(ds) for s, ds in opened.items()}
    files = all(paths is not None for paths, _ in listed.values())
    stream = files and should_stream(count_images(root), image_size)
    splits: dict[str, tuple[Any, np.ndarray]] = {}
    for s, ds in opened.items():
        paths, labels = listed[s]
        if paths is None or labels is None:
            splits[s] = _pixels(ds, image_size)
        else:
            splits[s] = (FileImages(paths, image_size) if stream else _decode(paths, image_size), labels)
    official = "/".join(str(kw.get("split", s)) for s, kw in kwargs.items())
    extra = "".join(f", {k} {v}" for k, v in params.items())
    notes = {"splits": f"official {official} of torchvision.datasets.{tv.cls}{extra}"}
    if "test" not in splits:
        notes["test"] = _carve_test(tv, splits)
    if stream:
        notes["loading"] = "streamed: decoded per batch by DataLoader workers (larger than the memory budget)"
    return RawSplits(
        train=splits["train"],
        val=splits.get("val"),
        test=splits["test"],
        classes=_class_names(opened["train"], splits["train"][1]),
        source=str(root),
        notes=notes,
    )


def fingerprint(data_dir: Path, *, name: str, image_size: int, **params: Any) -> str | None:
    """Count, total size and newest mtime of the files under the class's folder; None when absent
    (nothing there yet) or streamed (not decoded into the tensor cache)."""
    root = tv_root(data_dir, _entry(name))
    if not root.is_dir():
        return None
    n = size = newest = 0
    for dirpath, _, names in os.walk(root):
        for f in names:
            st = os.stat(os.path.join(dirpath, f))
            n, size, newest = n + 1, size + st.st_size, max(newest, st.st_mtime_ns)
    if n == 0 or should_stream(count_images(root), image_size):
        return None
    return f"{root.resolve()}:{n}:{size}:{newest}"


def loader(name: str) -> Callable[..., RawSplits]:
    """The loader of one dataset name, in the registry's shape ``(data_dir, download, **params)``."""
    return lambda data_dir, download, **params: load(data_dir, download, name=name, **params)


def fingerprinter(name: str) -> Callable[..., str | None]:
    return lambda data_dir, **params: fingerprint(data_dir, name=name, **params)
