"""Entries on disk: one safetensors file per key (features + labels), written atomically, checked
on every read, locked per key across processes, evicted least-recently-used beyond a budget.

An entry's header (safetensors metadata) holds its key fields, the byte count and a CRC-32 of the
tensors: a truncated or corrupt file fails the check, is dropped with a warning and rebuilt.
Last use is the file's mtime (touched on every hit), so eviction needs no index to keep in step.
A disk too full for an entry raises ``DiskFullError`` (an ``OSError``: a lost reuse, not a lost
cell, for callers that say so) and leaves no temp file behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tlbench.diskspace import ensure_room, writing

STORE_ENV = "TLBENCH_FEATURE_STORE"  # a folder, or off / 0 / none to disable the store
BUDGET_ENV = "TLBENCH_FEATURE_STORE_GB"
DEFAULT_BUDGET_GB = 20.0
SUFFIX = ".safetensors"
_OFF = {"off", "0", "none", "false", "no"}
FULL_DISK_REMEDY = (
    f"free space there (tlbench cache clear --older-than 7d), lower {BUDGET_ENV} "
    f"or point {STORE_ENV} at a disk with room ('off': no store)"
)


def default_root(data_root: Path | None = None) -> Path | None:
    """``$TLBENCH_FEATURE_STORE`` > ``<data dir>/features`` (beside the tensor cache); None: off."""
    chosen = os.environ.get(STORE_ENV, "").strip()
    if chosen.lower() in _OFF:
        return None
    if chosen:
        return Path(chosen).expanduser()
    if data_root is None:
        from tlbench.data.datasets import data_root as _data_root

        data_root = _data_root()
    return Path(data_root) / "features"


def store_budget_bytes() -> int:
    """``$TLBENCH_FEATURE_STORE_GB`` (default 20 GB) in bytes."""
    return int(float(os.environ.get(BUDGET_ENV, DEFAULT_BUDGET_GB)) * 1e9)


def _checksum(tensors: dict[str, torch.Tensor]) -> tuple[int, int]:
    """CRC-32 and byte count over the tensors' raw bytes, in name order."""
    crc, size = 0, 0
    for name in sorted(tensors):
        raw = tensors[name].contiguous().reshape(-1).view(torch.uint8).numpy()
        crc, size = zlib.crc32(raw, crc), size + raw.nbytes
    return crc, size


@dataclass
class StoreEntry:
    """One entry as ``tlbench cache ls`` shows it."""

    key: str
    path: Path
    size: int
    last_used: float
    meta: dict[str, Any]


class FeatureStore:
    """The folder of entries. ``get``/``put`` by key; ``lock`` serialises one key's extraction."""

    def __init__(self, root: Path, budget_bytes: int | None = None):
        self.root = Path(root)
        self.budget = store_budget_bytes() if budget_bytes is None else budget_bytes

    def path(self, key: str) -> Path:
        return self.root / f"{key}{SUFFIX}"

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        """The entry's tensors (CPU), or None when absent; a corrupt one is dropped with a warning."""
        path = self.path(key)
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("tlbench", "{}"))
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
            crc, size = _checksum(tensors)
            if (crc, size) != (meta.get("crc32"), meta.get("nbytes")) or meta.get("key") != key:
                raise ValueError(f"checksum or size mismatch ({size} bytes, expected {meta.get('nbytes')})")
        except FileNotFoundError:
            return None
        except Exception as err:  # truncated, garbled, half-written by a foreign tool
            warnings.warn(
                f"feature store entry {path} is unreadable ({err}): dropped, rebuilding", stacklevel=2
            )
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # last use, for LRU eviction
        return tensors

    def put(self, key: str, tensors: dict[str, torch.Tensor], fields: dict[str, Any]) -> Path:
        """Write atomically (temp file + rename), then evict beyond the budget (never this entry)."""
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        crc, size = _checksum(tensors)
        meta = {"key": key, "crc32": crc, "nbytes": size, "created": time.time(), "fields": fields}
        path = self.path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        what = f"writing feature store entry {key}"
        ensure_room(self.root, size, FULL_DISK_REMEDY, what)
        with writing(self.root, size, FULL_DISK_REMEDY, partial=tmp, what=what):
            self.root.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(tmp), metadata={"tlbench": json.dumps(meta, default=str)})
        os.replace(tmp, path)
        self.evict(keep=path)
        return path

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """An exclusive per-key lock across processes (fcntl): one extracts, the others wait."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / f".{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def entries(self) -> list[StoreEntry]:
        """Every entry, most recently used first (headers only: no tensor is read)."""
        out = []
        for path in self.root.glob(f"*{SUFFIX}"):
            try:
                st = path.stat()
                meta = _header(path)
            except (OSError, ValueError):
                continue
            out.append(StoreEntry(path.name[: -len(SUFFIX)], path, st.st_size, st.st_mtime, meta))
        return sorted(out, key=lambda e: e.last_used, reverse=True)

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Drop least-recently-used entries until the store fits its budget."""
        entries = self.entries()
        total, dropped = sum(e.size for e in entries), []
        for e in reversed(entries):  # oldest first
            if total <= self.budget:
                break
            if keep is not None and e.path == keep:
                continue
            e.path.unlink(missing_ok=True)  # its lock file stays: a waiter may hold it open
            total -= e.size
            dropped.append(e.path)
        return dropped

    def clear(self, older_than_s: float | None = None) -> list[StoreEntry]:
        """Drop every entry (or those unused for ``older_than_s`` seconds) and stray temp files."""
        now, dropped = time.time(), []
        for e in self.entries():
            if older_than_s is None or now - e.last_used > older_than_s:
                e.path.unlink(missing_ok=True)
                dropped.append(e)
        if older_than_s is None:
            for stray in self.root.glob(".*.tmp"):
                stray.unlink(missing_ok=True)
        return dropped


def _header(path: Path) -> dict[str, Any]:
    """A safetensors file's tlbench metadata, read from its JSON header alone."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if not 0 < n < 100_000_000:
            raise ValueError("not a safetensors header")
        header = json.loads(f.read(n))
    meta = json.loads(header.get("__metadata__", {}).get("tlbench", "{}"))
    shapes = {k: (v["dtype"], v["shape"]) for k, v in header.items() if k != "__metadata__"}
    return {**meta, "tensors": shapes}
