"""Image folders: any ImageFolder tree, and the PyTorch tutorial's hymenoptera (ants / bees).

The ``imagefolder`` and ``hymenoptera`` loaders (and their cache fingerprints) are at the end.

Images are decoded once with PIL to a fixed stored size (shorter side resized, centre crop),
as uint8, so the set then lives in the tensor cache and trains like CIFAR. Layouts:
``root/{train,val,test}/CLASS/*.jpg`` (any of val/test may be missing: carved from train), or
``root/CLASS/*.jpg`` (``test_ratio`` carved with a fixed seed; val carved from train as usual).
"""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tlbench.catalog.datasets import CATALOG, DatasetNotFoundError, RawSplits
from tlbench.data.base import FileImages, decode_image
from tlbench.data.fetching import download_blocker, expected_md5, route, socket_timeout, source_url
from tlbench.data.splits import carve_test
from tlbench.data.stream import should_stream

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
HYMENOPTERA_URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"


def _files(folder: Path) -> list[tuple[Path, str]]:
    """(image path, class name) for every image under folder/CLASS/, sorted for stability."""
    out = []
    for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
        for f in sorted(cls.rglob("*")):
            if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
                out.append((f, cls.name))
    return out


def _decode_all(
    items: list[tuple[Path, str]], classes: list[str], size: int
) -> tuple[np.ndarray, np.ndarray]:
    index = {c: i for i, c in enumerate(classes)}
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL releases the GIL
        images = list(pool.map(lambda it: decode_image(it[0], size), items))
    x = np.stack(images) if images else np.zeros((0, 3, size, size), dtype=np.uint8)
    return x, np.array([index[c] for _, c in items], dtype=np.int64)


def _lazy_all(items: list[tuple[Path, str]], classes: list[str], size: int) -> tuple[FileImages, np.ndarray]:
    index = {c: i for i, c in enumerate(classes)}
    return FileImages([p for p, _ in items], size), np.array([index[c] for _, c in items], dtype=np.int64)


def count_images(root: Path) -> int:
    return sum(
        Path(name).suffix.lower() in IMAGE_EXTENSIONS for _, _, names in os.walk(root) for name in names
    )


def fingerprint(root: Path) -> str | None:
    """Count, total size and newest mtime of the image files: cheap, and changes with the set."""
    if not root.is_dir():
        return None
    n = size = newest = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                st = os.stat(os.path.join(dirpath, name))
                n, size, newest = n + 1, size + st.st_size, max(newest, st.st_mtime_ns)
    return f"{root.resolve()}:{n}:{size}:{newest}" if n else None


def load_tree(root: Path, image_size: int, test_ratio: float, stream: bool = False) -> dict:
    """Train / val / test arrays of an image tree (split folders, or one folder split by ratio).

    With ``stream`` the images stay files (``FileImages``), decoded batch by batch in training.
    """
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"imagefolder: {root} is not a folder (give params: {{path: /data/my_images}})"
        )
    splits = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    notes: dict[str, str] = {}
    if "train" in splits:
        items = {s: _files(p) for s, p in splits.items()}
        classes = sorted({c for lst in items.values() for _, c in lst})
        load = _lazy_all if stream else _decode_all
        arrays = {s: load(lst, classes, image_size) for s, lst in items.items()}
        if "test" not in arrays:
            if "val" in arrays:
                arrays["test"] = arrays["val"]
                notes["test"] = "no test/ folder: test = val"
            else:
                x, y = arrays["train"]
                keep, take, how = carve_test(y, test_ratio)
                arrays["train"], arrays["test"] = (x[keep], y[keep]), (x[take], y[take])
                notes["test"] = f"carved from train: {how}"
    else:
        items_all = _files(root)
        classes = sorted({c for _, c in items_all})
        x, y = (_lazy_all if stream else _decode_all)(items_all, classes, image_size)
        keep, take, how = carve_test(y, test_ratio)
        arrays = {"train": (x[keep], y[keep]), "test": (x[take], y[take])}
        notes["test"] = f"one folder: test {how}"
    if not classes or len(arrays["train"][1]) == 0:
        raise DatasetNotFoundError(f"imagefolder: no images under {root} (expected CLASS/ folders of images)")
    if stream:
        notes["loading"] = "streamed: decoded per batch by DataLoader workers (larger than the memory budget)"
    return {"arrays": arrays, "classes": classes, "notes": notes}


def hymenoptera_url() -> tuple[str, str | None]:
    """(URL, MD5 or None) of the tutorial's zip: the official one (unchecked: PyTorch publishes no
    MD5), or ``TLBENCH_HYMENOPTERA_URL`` (a mirror) with ``TLBENCH_HYMENOPTERA_MD5`` if set."""
    url = source_url("TLBENCH_HYMENOPTERA_URL", HYMENOPTERA_URL)
    return url, expected_md5("TLBENCH_HYMENOPTERA_MD5", None, url, HYMENOPTERA_URL)


def _download_zip(archive: Path) -> str | None:
    """Download the zip to ``archive`` (via a partial name: a broken transfer leaves no bad zip);
    why it did not work, or None."""
    from torchvision.datasets.utils import download_url

    url, md5 = hymenoptera_url()
    blocker = download_blocker(url)
    if blocker:
        return blocker
    partial = archive.with_name(archive.name + ".partial")
    try:
        with socket_timeout():
            download_url(url, str(archive.parent), filename=partial.name, md5=md5)
    except Exception as err:  # a mirror down, a stalled transfer, an MD5 mismatch
        partial.unlink(missing_ok=True)
        checked = f" (checked against MD5 {md5}: TLBENCH_HYMENOPTERA_MD5)" if md5 else ""
        return f"download from {route(url)} failed: {type(err).__name__}: {err}{checked}"
    partial.rename(archive)
    return None


def hymenoptera_root(data_dir: Path, download: bool) -> Path:
    """``hymenoptera_data/`` under the data dir: extracted from the zip, downloaded if allowed."""
    folder = data_dir / "hymenoptera_data"
    if (folder / "train").is_dir() and (folder / "val").is_dir():
        return folder
    archive = data_dir / "hymenoptera_data.zip"
    error = "download disabled"
    if not archive.exists() and download:
        data_dir.mkdir(parents=True, exist_ok=True)
        error = _download_zip(archive) or error
    if archive.exists():
        tmp = data_dir / ".hymenoptera_data.partial"
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        except zipfile.BadZipFile as err:
            raise DatasetNotFoundError(
                f"{archive} is not a zip ({err}): delete it and download again"
            ) from None
        extracted = tmp / "hymenoptera_data"
        if not extracted.is_dir():
            raise DatasetNotFoundError(f"{archive} does not contain hymenoptera_data/")
        extracted.rename(folder)  # atomic: a crash mid-extract leaves only the .partial folder
        tmp.rmdir() if not any(tmp.iterdir()) else None
        return folder
    url, _ = hymenoptera_url()
    raise DatasetNotFoundError(
        f"hymenoptera: neither {folder}/ nor {archive} exists ({error}). Download {url} into {data_dir} "
        "(or run `tlbench prefetch` with internet; TLBENCH_HYMENOPTERA_URL names a mirror)."
    )


# ---------------------------------------------------------------------------------------------
# the loaders (their params and descriptions are in catalog.py)


def load_imagefolder(
    data_dir: Path, download: bool, *, path: str | None, image_size: int, test_ratio: float
) -> RawSplits:
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


def imagefolder_fingerprint(
    data_dir: Path, *, path: str | None, image_size: int, test_ratio: float
) -> str | None:
    if not path:
        return None
    root = Path(path).expanduser()
    if root.is_dir() and should_stream(count_images(root), image_size):
        return None  # streamed sets are not decoded into the tensor cache
    return fingerprint(root)


def load_hymenoptera(data_dir: Path, download: bool, *, image_size: int) -> RawSplits:
    root = hymenoptera_root(data_dir, download)
    tree = load_tree(root, image_size, 0.1)
    a = tree["arrays"]
    test_is_val = CATALOG.get("hymenoptera").test_is_val  # the catalog's flag, which reports read
    return RawSplits(
        train=a["train"],
        val=a["val"],
        test=a["val"] if test_is_val else a["test"],
        classes=tree["classes"],
        source=str(root),
        notes={"test": "the tutorial has no test split: test = val (153 images)"} if test_is_val else {},
    )


def hymenoptera_fingerprint(data_dir: Path, *, image_size: int) -> str | None:
    return fingerprint(data_dir / "hymenoptera_data")
