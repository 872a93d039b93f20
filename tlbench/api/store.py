"""The embedded store kept safe, from Python: a consistent copy (``backup_store``), a copy put
back (``restore_store``), a read-only look for damage, stale runs and orphaned checkpoints
(``check_store``). ``tlbench store`` is option parsing over these."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tlbench.tracking.backup import Copy
    from tlbench.tracking.health import Health


def _sqlite_store(tracking_uri: str | None, doing: str) -> tuple[Path, Path]:
    """The store's SQLite file and artifact folder; a server or database URL gets the sentence
    that its own tools keep its copies."""
    from tlbench.dburl import redact
    from tlbench.tracking.backup import StoreCopyError
    from tlbench.tracking.damage import sqlite_file
    from tlbench.tracking.store import local_artifact_dir, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    db, artifacts = sqlite_file(uri), local_artifact_dir(uri)
    if db is None or artifacts is None:
        raise StoreCopyError(
            f"{redact(uri)} is not an embedded SQLite store, so tlbench cannot {doing} it: use the"
            " database's own tools (PostgreSQL: pg_dump / pg_restore; MySQL: mysqldump) or the"
            " server's, and copy its artifact store alongside"
        )
    return db, artifacts


def backup_store(
    *, to: str | Path | None = None, artifacts: bool = False, tracking_uri: str | None = None
) -> Copy:
    """A consistent copy of the embedded store, safe to take while runs write to it: a new folder
    ``to`` (default ``<store folder>-backup-YYYYmmdd-HHMMSS`` beside it, e.g.
    ``./mlruns-backup-20250131-174501``) holding ``mlflow.db`` and, with ``artifacts``, the
    store's artifacts (the best checkpoints that ``cell:`` weights need)."""
    from tlbench.tracking.backup import backup

    db, folder = _sqlite_store(tracking_uri, "back up")
    return backup(db, Path(to) if to else None, folder if artifacts else None)


def restore_store(backup: str | Path, *, force: bool = False, tracking_uri: str | None = None) -> Copy:
    """Put a backup (a folder ``backup_store`` made, or an MLflow ``.db`` file) back as the store,
    after checking its integrity. The current file is kept aside (``mlflow.db.damaged-<time>``);
    a sound one is replaced only with ``force`` (kept as ``.replaced-<time>``). The backup's
    artifacts missing from the store's folder are added."""
    from tlbench.tracking.backup import restore

    db, folder = _sqlite_store(tracking_uri, "restore")
    return restore(Path(backup), db, force=force, artifacts=folder)


def check_store(*, tracking_uri: str | None = None, checkpoint_dir: str | Path | None = None) -> Health:
    """Read-only: the store file's integrity (SQLite ``integrity_check``), RUNNING runs whose
    process is gone, checkpoint folders (``checkpoint_dir``, as ``tlbench run`` resolves it) that
    nothing will continue. ``Health.healthy`` is True when nothing was found."""
    from tlbench.tracking.health import check
    from tlbench.tracking.store import resolve_tracking_uri
    from tlbench.train.checkpoint import checkpoint_root

    return check(resolve_tracking_uri(tracking_uri), checkpoint_root(checkpoint_dir))
