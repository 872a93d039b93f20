"""The on-disk uint8 tensor cache: decode a dataset once, load it in milliseconds after that.

A cache file holds a dataset's raw splits as safetensors (never pickle), keyed by the dataset's
name, params and a *fingerprint* of its source (file sizes and mtimes, a library version, a
generator version). A changed source gives a new key; the stale file for the same name and
params is removed when the new one is written. Writes are atomic (temp file + rename); a disk too
full for one raises ``DiskFullError`` (an ``OSError``) and leaves no temp file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tlbench.diskspace import ensure_room, writing

CACHE_VERSION = "1"
FULL_DISK_REMEDY = "free space there or point --data-dir (or TLBENCH_DATA) at a disk with room"


def _digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cache_path(root: Path, name: str, params: dict[str, Any], fingerprint: str) -> Path:
    stem = name.replace(":", "_")  # torchvision:DTD -> torchvision_DTD
    return root / "tensors" / f"{stem}-{_digest([params, CACHE_VERSION])}-{_digest(fingerprint)}.safetensors"


def file_fingerprint(paths: list[Path]) -> str:
    """Cheap identity of source files: names, sizes and modification times."""
    parts = []
    for p in paths:
        st = p.stat()
        parts.append(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def read_cache(path: Path) -> dict[str, Any] | None:
    """The cached raw splits, or None if absent or unreadable (a broken file is simply rebuilt)."""
    if not path.exists():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        return {"arrays": arrays, "meta": json.loads(meta.get("tlbench", "{}"))}
    except Exception:
        return None


def write_cache(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write atomically; refuse up front (``DiskFullError``) when the disk cannot hold the arrays."""
    from safetensors.numpy import save_file

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    needed, what = sum(a.nbytes for a in arrays.values()), f"writing the tensor cache {path.name}"
    ensure_room(path.parent, needed, FULL_DISK_REMEDY, what)
    with writing(path.parent, needed, FULL_DISK_REMEDY, partial=tmp, what=what):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(arrays, str(tmp), metadata={"tlbench": json.dumps(meta)})
    os.replace(tmp, path)
    prefix = path.name.rsplit("-", 1)[0] + "-"
    for old in path.parent.glob(prefix + "*.safetensors"):
        if old != path:
            old.unlink(missing_ok=True)  # the source changed: its old cache is stale
