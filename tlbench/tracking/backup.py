"""Keeping a copy of the embedded store, and putting one back, with nothing lost either way.

A backup is a folder: ``mlflow.db`` (made with SQLite's online backup API, so it is one
consistent state of the store even while runs write to it), ``backup.json`` (what it holds), and
with artifacts an ``artifacts/`` copy of the store's artifact folder (the best checkpoints that
``cell:`` weights need). The database is copied first: a run FINISHED in it wrote its artifacts
before its status, so they are all there when the folder is copied after.

A restore checks the backup's integrity first, moves the current file aside
(``mlflow.db.damaged-<time>``, or ``.replaced-<time>`` when it was sound and ``force`` was
given) with its journal, and adds the backup's artifacts that are missing from the store's folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

from tlbench.errors import TlbenchError
from tlbench.tracking.damage import NoStoreError, damage
from tlbench.version import __version__

BACKUP_DB = "mlflow.db"
ARTIFACTS = "artifacts"
MANIFEST = "backup.json"
SIDECARS = ("-journal", "-wal", "-shm")  # SQLite's files beside a database: they move with it


class StoreCopyError(TlbenchError, ValueError):
    """A backup or restore that cannot be made: which file, and what to do instead."""


@dataclass
class Copy:
    """What a backup or restore wrote: the database, its runs, the artifact files copied."""

    db: Path
    runs: dict[str, int]  # status -> active runs (cell runs and claims alike)
    artifact_files: int | None = None  # None: artifacts were not part of it
    folder: Path | None = None  # the backup's folder
    kept_aside: Path | None = None  # a restore: where the file it replaced went


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def default_backup_folder(db: Path) -> Path:
    """``./mlruns/mlflow.db`` -> ``./mlruns-backup-YYYYmmdd-HHMMSS``: beside the store's folder,
    so deleting ``mlruns`` does not delete its backups."""
    folder = db.resolve().parent
    return folder.with_name(f"{folder.name}-backup-{stamp()}")


def run_counts(db: Path) -> dict[str, int]:
    """Active runs by status in an MLflow SQLite file; a file without MLflow's tables is refused."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
            rows = conn.execute(
                "SELECT status, count(*) FROM runs WHERE lifecycle_stage = 'active' GROUP BY status"
            ).fetchall()
    except sqlite3.DatabaseError as err:
        raise StoreCopyError(
            f"{db} is not an MLflow store ({err}): give a tlbench backup folder or its mlflow.db"
        ) from err
    return {status: n for status, n in rows}


def _sqlite_copy(src: Path, dst: Path) -> None:
    """``src`` copied to ``dst`` through SQLite's online backup API, under a temporary name until
    complete (a copy cut short never takes the real name)."""
    partial = dst.with_name(dst.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        with closing(sqlite3.connect(src, timeout=60)) as source, closing(sqlite3.connect(partial)) as target:
            source.backup(target)  # one step: one read transaction, so one consistent state
        os.replace(partial, dst)
    finally:
        partial.unlink(missing_ok=True)


def _copy_missing(src: Path, dst: Path) -> int:
    """Files of ``src`` copied into ``dst`` where ``dst`` has none of that name; files that vanish
    while copying (a writer's temporary ones) are skipped. How many were copied."""
    copied = 0
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if not path.is_file() or target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileNotFoundError):
            shutil.copy2(path, target)
            copied += 1
    return copied


def backup(db: Path, to: Path | None = None, artifacts: Path | None = None) -> Copy:
    """A consistent copy of the store file ``db`` in a new folder (``to``, or beside the store's
    folder), with the ``artifacts`` folder too when given."""
    if not db.is_file():
        raise NoStoreError(db, "nothing to back up")
    words = damage(db)
    if words:
        raise StoreCopyError(
            f"{db} is damaged (SQLite: {words}): a copy would keep the damage; restore an earlier"
            f' backup (tlbench store restore BACKUP) or salvage it: sqlite3 {db} ".recover" | sqlite3 recovered.db'
        )
    folder = (to or default_backup_folder(db)).expanduser()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise StoreCopyError(f"{folder} already exists and is not an empty folder: choose a new --to folder")
    folder.mkdir(parents=True, exist_ok=True)
    out = Copy(folder / BACKUP_DB, {}, folder=folder)
    _sqlite_copy(db, out.db)
    out.runs = run_counts(out.db)
    if artifacts is not None:
        out.artifact_files = _copy_missing(artifacts, folder / ARTIFACTS) if artifacts.is_dir() else 0
    manifest = {
        "store": str(db.resolve()),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tlbench": __version__,
        "runs": out.runs,
        "artifacts": out.artifact_files is not None,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _backup_parts(source: Path) -> tuple[Path, Path | None]:
    """The database and the artifacts folder (if any) of a backup folder, or a bare .db file."""
    if source.is_dir():
        db = source / BACKUP_DB
        if not db.is_file():
            raise StoreCopyError(
                f"{source} holds no {BACKUP_DB}: give a folder `tlbench store backup` made, or a .db file"
            )
        arts = source / ARTIFACTS
        return db, arts if arts.is_dir() else None
    if not source.is_file():
        raise StoreCopyError(
            f"no backup at {source}: give a folder `tlbench store backup` made, or a .db file"
        )
    return source, None


def _move_aside(db: Path, label: str) -> Path:
    """``db`` (and its journal, if any) renamed to ``<name>.<label>-<time>``: nothing is deleted."""
    aside = db.with_name(f"{db.name}.{label}-{stamp()}")
    os.replace(db, aside)
    for suffix in SIDECARS:
        side = db.with_name(db.name + suffix)
        if side.exists():
            os.replace(side, aside.with_name(aside.name + suffix))
    return aside


def restore(source: Path, db: Path, *, force: bool = False, artifacts: Path | None = None) -> Copy:
    """Put the backup ``source`` back as the store file ``db``; the backup's artifacts (if it has
    them) are added to the ``artifacts`` folder. A sound store is replaced only with ``force``."""
    backup_db, backup_artifacts = _backup_parts(source.expanduser())
    words = damage(backup_db, full=True)
    if words:
        raise StoreCopyError(
            f"the backup {backup_db} is damaged too (SQLite: {words}): choose another backup"
        )
    runs = run_counts(backup_db)
    aside = None
    if db.is_file() and db.stat().st_size > 0:
        words = damage(db, full=True)
        if words is None and not force:
            raise StoreCopyError(
                f"{db} reads as sound: pass --force to replace it with {backup_db} (it is kept as"
                f" {db.name}.replaced-<time>); stop every tlbench process using it first"
            )
        aside = _move_aside(db, "damaged" if words else "replaced")
    elif db.exists():
        aside = _move_aside(db, "empty")
    db.parent.mkdir(parents=True, exist_ok=True)
    _sqlite_copy(backup_db, db)
    out = Copy(db, runs, kept_aside=aside)
    if backup_artifacts is not None and artifacts is not None:
        out.artifact_files = _copy_missing(backup_artifacts, artifacts)
    return out
