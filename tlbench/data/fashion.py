"""Fashion-MNIST from its idx files (gzipped or not), wherever a machine keeps them.

Looked for under the data dir (``fashion_mnist/`` or torchvision's ``FashionMNIST/raw/``) and in
Debian's ``dataset-fashion-mnist`` package; downloaded with torchvision only as a last resort.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from tlbench.catalog.datasets import DatasetNotFoundError, RawSplits
from tlbench.data.cache import file_fingerprint

DEBIAN_FASHION_MNIST = [Path("/usr/share/datasets/fashion-mnist")]
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


def fingerprint(data_dir: Path) -> str | None:
    """Identity of the idx files found (for the tensor cache), or None when there are none."""
    files = _find_fashion(data_dir)
    return file_fingerprint(list(files.values())) if files else None


def load(data_dir: Path, download: bool) -> RawSplits:
    """The idx files as raw splits; downloaded (torchvision) only when none are found and allowed."""
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
