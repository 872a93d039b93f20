"""A full disk said in one sentence: which folder, how much was needed, how much is free, what to do.

Writers (checkpoints, the feature store, the tensor cache, a run's artifacts) wrap each write in
``writing(folder, nbytes, remedy, partial=...)``: a write that runs out of space (``OSError``
ENOSPC / EDQUOT, safetensors' "No space left on device (os error 28)", or torch.save's
"unexpected pos" riddle on a disk that is indeed short) becomes a ``DiskFullError``, and the
half-written file is removed whatever went wrong, so no later read takes it for a good one.
``ensure_room`` refuses a write up front when the disk cannot hold it (no doomed bytes written).
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tlbench.errors import TlbenchError

_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_FULL_TEXTS = ("no space left on device", "disk quota exceeded", "os error 28", "os error 122")
# torch.save (PyTorchStreamWriter) hides the errno: these mean "a write came up short", which is
# a full disk only if the disk is indeed short of the bytes (checked before calling it that), with
# SLACK for what the format adds to the tensors' bytes (headers, alignment, the pickled structure).
_SHORT_WRITE_TEXTS = ("unexpected pos", "pytorchstreamwriter failed writing file", "file write failed")
SLACK = 1 << 20


class DiskFullError(TlbenchError, OSError):
    """A write that did not fit: the message names the folder, the bytes and the way out.

    An ``OSError`` too (errno ENOSPC), so callers that treat an unwritable cache as a lost
    speed-up, not a failure, keep doing so, with this sentence in their warning.
    """

    def __init__(self, message: str, folder: str | Path, needed: int, free: int | None):
        super().__init__(message)
        self.errno = errno.ENOSPC
        self.folder, self.needed, self.free = Path(folder), needed, free

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries (pool workers)
        return (type(self), (str(self), self.folder, self.needed, self.free))


def human(nbytes: int | None) -> str:
    """``1536`` -> ``1.5 kB`` (powers of 1000, like ``df -H``)."""
    if nbytes is None:
        return "an unknown amount"
    size = float(nbytes)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def free_bytes(folder: str | Path) -> int | None:
    """Bytes free to this user where ``folder`` is (its nearest existing parent); None if unknown."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def disk_full(folder: str | Path, needed: int, remedy: str, what: str = "writing") -> DiskFullError:
    """The one sentence, with ``free`` measured now."""
    free = free_bytes(folder)
    message = (
        f"No space left in {folder}: {what} needs about {human(needed)} ({needed:,} bytes) and "
        f"{human(free)} {'' if free is None else f'({free:,} bytes) '}is free; {remedy}."
    )
    return DiskFullError(message, folder, needed, free)


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def is_disk_full(err: BaseException, folder: str | Path, needed: int) -> bool:
    """Did ``err`` come from running out of space in ``folder`` (a write of about ``needed`` bytes)?"""
    for e in _chain(err):
        if isinstance(e, DiskFullError) or (isinstance(e, OSError) and e.errno in _FULL_ERRNOS):
            return True
        text = str(e).lower()
        if any(t in text for t in _FULL_TEXTS):
            return True
        if isinstance(e, RuntimeError) and any(t in text for t in _SHORT_WRITE_TEXTS):
            free = free_bytes(folder)
            return free is not None and free < needed + SLACK
    return False


def ensure_room(folder: str | Path, needed: int, remedy: str, what: str = "writing") -> None:
    """Raise ``DiskFullError`` now if ``folder``'s disk has fewer than ``needed`` bytes free."""
    free = free_bytes(folder)
    if free is not None and free < needed:
        raise disk_full(folder, needed, remedy, what)


def _remove(paths: Iterable[Path]) -> None:
    for p in paths:
        with suppress(OSError):
            p.unlink(missing_ok=True)


@contextmanager
def writing(
    folder: str | Path,
    needed: int,
    remedy: str,
    *,
    partial: Path | Iterable[Path] = (),
    what: str = "writing",
) -> Iterator[None]:
    """Run a write into ``folder``; on any error remove ``partial`` (the temp files it may have
    left), and turn running out of space into ``DiskFullError`` (the cause kept as ``__cause__``)."""
    leftovers = [partial] if isinstance(partial, Path) else list(partial)
    try:
        yield
    except DiskFullError:
        _remove(leftovers)
        raise
    except BaseException as err:
        _remove(leftovers)  # before measuring free space: the sentence tells what is really free
        if isinstance(err, Exception) and is_disk_full(err, folder, needed):
            raise disk_full(folder, needed, remedy, what) from err
        raise


def state_nbytes(obj: Any) -> int:
    """The bytes of the tensor storages in a (nested) state: about what torch.save writes, found
    without serialising it (a second copy of a big model in memory) and a floor for its size."""
    import torch

    seen: dict[int, int] = {}
    stack = [obj]
    while stack:
        cur = stack.pop()
        if isinstance(cur, torch.Tensor):
            storage = cur.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        elif isinstance(cur, dict):
            stack.extend(cur.values())
        elif isinstance(cur, (list, tuple)):
            stack.extend(cur)
    return sum(seen.values())


def tree_nbytes(folder: str | Path) -> int:
    """The bytes of the files under ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
