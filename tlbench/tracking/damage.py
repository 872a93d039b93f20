"""A damaged or full embedded store said in one sentence, never as SQLAlchemy's traceback.

The embedded store is one SQLite file holding every result a user has. A disk crash or a copy
cut short leaves it truncated or corrupt, and MLflow then fails deep inside SQLAlchemy with
"database disk image is malformed". ``check_on_open`` asks SQLite itself when the tracker opens
the file (reading its schema catches a truncated file at once; ``PRAGMA quick_check`` the rest,
on files small enough for it to take well under a second); ``sqlite_faults`` turns the same
words, wherever they surface later, into ``StoreDamagedError`` (or, for "database or disk is
full", the project's ``DiskFullError``), naming the file and the way out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from tlbench.diskspace import DiskFullError, free_bytes, human
from tlbench.errors import TlbenchError

# SQLite's own words for a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB)
DAMAGED = ("database disk image is malformed", "file is not a database", "malformed database schema")
FULL = "database or disk is full"  # SQLITE_FULL
# quick_check reads every page (about 0.6 GB/s from the page cache): on open only up to this size
QUICK_CHECK_MAX_BYTES = 256 * 2**20


class StoreDamagedError(TlbenchError, OSError):
    """The store's SQLite file is damaged: what SQLite said, and how to get the results back."""

    def __init__(self, db: str | Path, words: str):
        self.db, self.words = Path(db), words
        super().__init__(
            f"{db} is damaged (SQLite: {words}): put a backup back with `tlbench store restore BACKUP`"
            f" (the damaged file is kept aside), or salvage what is readable with"
            f' `sqlite3 {db} ".recover" | sqlite3 recovered.db` and use --tracking-uri sqlite:///recovered.db'
        )

    def __reduce__(self) -> tuple[object, ...]:  # crosses process boundaries (pool workers)
        return (type(self), (self.db, self.words))


class NoStoreError(TlbenchError, FileNotFoundError):
    """A command that reads an existing embedded store found no file there."""

    def __init__(self, db: str | Path, what: str = "nothing to read"):
        super().__init__(
            f"no store at {db}: {what} (give --tracking-uri sqlite:///PATH, or run from its folder)"
        )


def sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URI (None for any other store, or an in-memory one)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def store_full(db: Path) -> DiskFullError:
    """SQLite ran out of room for the store: where, and how much is left."""
    free = free_bytes(db.parent)
    exact = "" if free is None else f" ({free:,} bytes)"
    return DiskFullError(
        f"No space left for the store {db} (SQLite: {FULL}): {human(free)}{exact} is free in {db.parent};"
        " free some space there (or move the store and pass --tracking-uri), then run again",
        db.parent,
        0,
        free,
    )


def fault(err: BaseException, db: Path) -> TlbenchError | None:
    """The clear error for ``err`` (or anything it was raised from) if SQLite said the file is
    damaged or the disk is full; None for every other error."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, TlbenchError):
            return None  # already said clearly
        text = str(cur)
        words = next((w for w in DAMAGED if w in text), None)
        if words:
            return StoreDamagedError(db, words)
        if FULL in text:
            return store_full(db)
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


@contextmanager
def sqlite_faults(db: Path | None) -> Iterator[None]:
    """Run store calls; SQLite's "malformed" / "disk is full" become one sentence about ``db``."""
    try:
        yield
    except Exception as err:
        clear = fault(err, db) if db is not None else None
        if clear is None:
            raise
        raise clear from err


def damage(db: Path, *, full: bool = False, max_bytes: int | None = QUICK_CHECK_MAX_BYTES) -> str | None:
    """SQLite's words for what is wrong with the file, or None if it reads as sound.

    Reads the schema (a truncated file fails here, whatever its size), then runs
    ``quick_check`` on files up to ``max_bytes`` (None: any size), or with ``full``
    ``integrity_check`` (indexes against their tables too) on any file. A store that is merely
    locked by a writer counts as sound: a busy store is not a damaged one.
    """
    try:
        with closing(sqlite3.connect(db, timeout=30)) as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if not full and max_bytes is not None and db.stat().st_size > max_bytes:
                return None
            pragma = "integrity_check" if full else "quick_check"
            rows = [r[0] for r in conn.execute(f"PRAGMA {pragma}(5)").fetchall()]
    except sqlite3.OperationalError as err:
        if FULL in str(err):
            raise store_full(db) from err
        return None  # locked, or unreadable for a reason the tracker's own open will report
    except sqlite3.DatabaseError as err:
        return str(err)
    if rows == ["ok"]:
        return None
    lines = [line for row in rows for line in str(row).splitlines() if not line.startswith("***")]
    return "; ".join(lines) or "integrity check failed"


def check_on_open(db: Path) -> None:
    """Raise ``StoreDamagedError`` if the existing store file is damaged (cheap: see ``damage``)."""
    if db.is_file() and db.stat().st_size > 0:
        words = damage(db)
        if words:
            raise StoreDamagedError(db, words)
