"""CIFAR-10 / CIFAR-100 (fine and the 20 coarse superclasses) from the official python format.

The python format is pickle. We read it with a restricted unpickler that can build only dicts,
lists, strings, bytes, numbers and numpy arrays: a tampered file cannot run code. Files are found
under the data dir in torchvision's layout and downloaded otherwise: the official archive with
torchvision's download utils and MD5, or a mirror's (``TLBENCH_CIFAR10_URL`` / ``..._MD5``).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tlbench.catalog.datasets import DatasetNotFoundError, RawSplits
from tlbench.data.cache import file_fingerprint
from tlbench.data.fetching import (
    download_blocker,
    expected_md5,
    route,
    socket_timeout,
    source_url,
    warn_unchecked,
)

CIFAR = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
    },
    "cifar100": {"folder": "cifar-100-python", "train": ["train"], "test": ["test"], "meta": "meta"},
}

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Builds plain data and numpy arrays only; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR file")


def safe_load(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        obj = _SafeUnpickler(f, encoding="latin1").load()
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def candidates(root: Path, kind: str) -> list[Path]:
    folder = CIFAR[kind]["folder"]
    return [root / folder, root / kind / folder]


def find(root: Path, kind: str) -> Path | None:
    spec = CIFAR[kind]
    for folder in candidates(root, kind):
        if all((folder / n).exists() for n in [*spec["train"], *spec["test"], spec["meta"]]):
            return folder
    return None


def fingerprint(root: Path, kind: str) -> str | None:
    folder = find(root, kind)
    if folder is None:
        return None
    spec = CIFAR[kind]
    return file_fingerprint([folder / n for n in [*spec["train"], *spec["test"], spec["meta"]]])


def source(kind: str) -> tuple[str, str, str | None]:
    """(URL, archive name, MD5 to check or None) of a kind's download: torchvision's official
    ones, or ``TLBENCH_CIFAR10_URL`` / ``TLBENCH_CIFAR100_URL`` (a mirror; ``..._MD5`` for its file)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if kind == "cifar10" else CIFAR100
    env = f"TLBENCH_{kind.upper()}"
    url = source_url(f"{env}_URL", cls.url)
    return url, cls.filename, expected_md5(f"{env}_MD5", cls.tgz_md5, url, cls.url)


def fetch_archive(root: Path, kind: str) -> str | None:
    """Download and extract a kind's archive into ``root`` (torchvision's utils, MD5-checked);
    why it did not work, or None."""
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    url, filename, md5 = source(kind)
    blocker = download_blocker(url)
    if blocker:
        return blocker
    if md5 is None:
        warn_unchecked(kind, url, f"TLBENCH_{kind.upper()}_MD5")
    try:
        with socket_timeout():
            download_and_extract_archive(url, str(root), filename=filename, md5=md5)
    except Exception as err:  # mirror down, a stalled transfer, a checksum mismatch
        if md5 and (root / filename).is_file() and not check_integrity(str(root / filename), md5):
            return (
                f"{url} served a file whose MD5 is not {md5} (a mirror with another file: set "
                f"TLBENCH_{kind.upper()}_MD5 to its MD5, or to empty to skip the check)"
            )
        return f"download from {route(url)} failed: {type(err).__name__}: {err}"
    return None if find(root, kind) is not None else f"{url}: the archive has no {CIFAR[kind]['folder']}/"


def locate(root: Path, kind: str, download_ok: bool) -> Path:
    """The extracted CIFAR folder, downloading it (torchvision, md5-checked) if allowed."""
    folder = find(root, kind)
    if folder is not None:
        return folder
    error = fetch_archive(root, kind) if download_ok else "download disabled"
    folder = find(root, kind)
    if folder is not None:
        return folder
    looked = "\n  ".join(str(c) for c in candidates(root, kind))
    url, filename, _ = source(kind)
    raise DatasetNotFoundError(
        f"{kind}: the python-format files are not in any of:\n  {looked}\n({error}). Run `tlbench prefetch` "
        f"on a machine with internet and copy {CIFAR[kind]['folder']}/ into {root}, or download {url} "
        f"(TLBENCH_{kind.upper()}_URL: a mirror) and extract it there."
    )


def _images(batch: dict[str, Any]) -> np.ndarray:
    data = np.asarray(batch["data"], dtype=np.uint8)
    return data.reshape(-1, 3, 32, 32)


def load(root: Path, download: bool, kind: str, labels: str = "fine") -> tuple[tuple, tuple, list[str], str]:
    """(train (x, y), test (x, y), class names, source) for cifar10 or cifar100 (fine|coarse labels)."""
    folder = locate(root, kind, download)
    spec = CIFAR[kind]
    meta = safe_load(folder / spec["meta"])
    key = "labels" if kind == "cifar10" else f"{labels}_labels"
    names_key = "label_names" if kind == "cifar10" else f"{labels}_label_names"

    def read(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        batches = [safe_load(folder / f) for f in files]
        x = np.concatenate([_images(b) for b in batches])
        y = np.concatenate([np.asarray(b[key], dtype=np.int64) for b in batches])
        return x, y

    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key]]
    return read(spec["train"]), read(spec["test"]), classes, str(folder)


def loader(kind: str, labels: str = "fine") -> Callable[[Path, bool], RawSplits]:
    """The loader of one catalog entry: ``cifar10``, ``cifar100`` or (coarse labels) ``cifar100_coarse``."""

    def load_entry(data_dir: Path, download: bool) -> RawSplits:
        train, test, classes, source = load(data_dir, download, kind, labels)
        return RawSplits(train=train, test=test, classes=classes, source=source)

    return load_entry


def fingerprinter(kind: str) -> Callable[[Path], str | None]:
    """``fingerprint`` for one kind, in the shape the dataset registry calls it."""
    return lambda data_dir: fingerprint(data_dir, kind)
