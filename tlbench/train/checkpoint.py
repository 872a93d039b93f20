"""Per-epoch training checkpoints, so a killed or crashed cell resumes where it stopped.

One folder per MLflow run (``<checkpoint dir>/<run id>/``) holds ``last.pt`` and ``prev.pt``:
each epoch's state is written to a temporary file and renamed over ``last.pt`` after the old one
became ``prev.pt``, so a crash mid-write never loses both. Files are read with
``torch.load(weights_only=True)``: tensors, numbers, strings and containers only, never pickled
objects. A file that cannot be read (truncated, corrupt, another cell's) falls back to the
previous one, then to a clean start, with a warning. A save that does not fit on the disk ends in
``DiskFullError`` (one sentence: the folder, the bytes, what to do), its temp file removed and
``last.pt`` / ``prev.pt`` untouched, so the cell can resume from them once space is freed.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from tlbench.diskspace import ensure_room, state_nbytes, writing

CHECKPOINT_ENV = "TLBENCH_CHECKPOINTS"
INTERVAL_ENV = "TLBENCH_CHECKPOINT_S"
FORMAT_VERSION = 1
FULL_DISK_REMEDY = (
    f"free space there or point --checkpoint-dir (or {CHECKPOINT_ENV}) at a disk with room, then run again"
)


def checkpoint_interval() -> float:
    """Seconds between a cell's checkpoints (``TLBENCH_CHECKPOINT_S``, default 10; 0: every
    epoch). An epoch longer than that is checkpointed every epoch; small cells (a probe, a
    few-shot cell: epochs of milliseconds) save at their phases' ends instead of every epoch. A
    killed cell loses at most that much training, and MLflow shows only checkpointed epochs."""
    return float(os.environ.get(INTERVAL_ENV, "10"))


def checkpoint_root(path: str | Path | None = None) -> Path:
    """``--checkpoint-dir`` > ``TLBENCH_CHECKPOINTS`` > ``./mlruns/checkpoints`` (a shared
    filesystem path when cells may resume on another machine)."""
    if path:
        return Path(path).expanduser()
    env = os.environ.get(CHECKPOINT_ENV)
    return Path(env).expanduser() if env else Path("mlruns").resolve() / "checkpoints"


def _keep_as(src: Path, dst: Path) -> None:
    """``dst`` becomes a copy of ``src`` while ``src`` stays: a hard link renamed into place (an
    interrupt between two renames must not leave ``last.pt`` missing); a copy where links fail."""
    staged = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    staged.unlink(missing_ok=True)
    try:
        os.link(src, staged)
    except OSError:  # a filesystem without hard links
        with writing(
            dst.parent,
            src.stat().st_size,
            FULL_DISK_REMEDY,
            partial=staged,
            what=f"copying {src.name} to {dst.name}",
        ):
            shutil.copyfile(src, staged)
    os.replace(staged, dst)


class Checkpointer:
    """Saves and restores the training state of one run (one cell attempt)."""

    def __init__(self, folder: str | Path, cell_id: str, interval_s: float | None = None):
        self.folder = Path(folder)
        self.cell_id = cell_id
        self.interval_s = checkpoint_interval() if interval_s is None else interval_s
        self._saved_at = time.monotonic()

    def due(self) -> bool:
        """Is it time for the next checkpoint (``interval_s`` since the last, or since the start)?"""
        return time.monotonic() - self._saved_at >= self.interval_s

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    @property
    def prev(self) -> Path:
        return self.folder / "prev.pt"

    def save(self, state: dict[str, Any]) -> None:
        """Atomically replace ``last.pt`` (the old one is kept as ``prev.pt``); a disk too full
        for it raises ``DiskFullError`` before ``last.pt`` or ``prev.pt`` is touched."""
        tmp = self.folder / f".last.{os.getpid()}.tmp"
        full = {"format": FORMAT_VERSION, "cell_id": self.cell_id, **state}
        needed = state_nbytes(full)  # the tensors' bytes: a floor for the file, no second copy made
        what = "writing the checkpoint"
        ensure_room(self.folder, needed, FULL_DISK_REMEDY, what)
        with writing(self.folder, needed, FULL_DISK_REMEDY, partial=tmp, what=what):
            self.folder.mkdir(parents=True, exist_ok=True)
            torch.save(full, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())  # a delayed-allocation filesystem reports ENOSPC here
            if self.last.exists():  # prev <- last without a moment where neither holds the last epoch
                _keep_as(self.last, self.prev)
        os.replace(tmp, self.last)
        self._saved_at = time.monotonic()

    def load(self) -> dict[str, Any] | None:
        """The newest readable checkpoint of this cell, or None (nothing saved / nothing usable)."""
        for path in (self.last, self.prev):
            if not path.exists():
                continue
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:  # truncated, corrupt, or holding objects we will not unpickle
                warnings.warn(
                    f"checkpoint {path} is unreadable ({type(err).__name__}: {err}); trying an older one",
                    stacklevel=2,
                )
                continue
            if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
                warnings.warn(
                    f"checkpoint {path} is not a tlbench v{FORMAT_VERSION} checkpoint; ignored", stacklevel=2
                )
                continue
            if state.get("cell_id") != self.cell_id:
                warnings.warn(
                    f"checkpoint {path} belongs to cell {state.get('cell_id')}, not {self.cell_id}; ignored",
                    stacklevel=2,
                )
                continue
            return state
        if self.last.exists() or self.prev.exists():
            warnings.warn(
                f"no usable checkpoint in {self.folder}; the cell starts from scratch", stacklevel=2
            )
        return None

    def exists(self) -> bool:
        return self.last.exists() or self.prev.exists()

    def remove(self) -> None:
        """Drop the folder once the run is FINISHED (its best weights are in MLflow)."""
        shutil.rmtree(self.folder, ignore_errors=True)
