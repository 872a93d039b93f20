"""A store's health, read only: is the file sound, does any run claim to be RUNNING with no
live owner, do checkpoints linger that nothing will resume.

Nothing is changed: stale runs are told by the same rule that ``reaping`` acts on
(``heartbeat.owner_gone``, else a heartbeat older than ``stale_after()``), and the next ``tlbench
run`` reaps them; a checkpoint folder is an orphan when its run is gone from the store, deleted,
or ended FINISHED / FAILED (a FINISHED run drops its checkpoint, a FAILED one is never continued,
except one that failed on a full disk: the next ``tlbench run`` resumes it once space is freed).
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tlbench.tracking import tags
from tlbench.tracking.damage import NoStoreError, damage, sqlite_file
from tlbench.tracking.heartbeat import is_stale, owner_gone

if TYPE_CHECKING:
    from tlbench.tracking.store import Tracker

ENDED = ("FINISHED", "FAILED")  # a checkpoint of a run in these states is never read again


@dataclass
class Problem:
    """One thing wrong: its kind, what it is about, what was found, what to do."""

    kind: str  # "damaged" | "stale run" | "orphaned checkpoint"
    subject: str
    detail: str
    fix: str


@dataclass
class Health:
    """What ``check`` found in one store."""

    store: str
    problems: list[Problem] = field(default_factory=list)
    runs_running: int = 0  # RUNNING cell runs looked at
    checkpoints: int = 0  # checkpoint folders looked at

    @property
    def healthy(self) -> bool:
        return not self.problems


def check_file(db: Path) -> Problem | None:
    """SQLite's ``integrity_check`` over the whole file (tables and indexes)."""
    words = damage(db, full=True, max_bytes=None)
    if words is None:
        return None
    return Problem(
        "damaged",
        str(db),
        f"SQLite: {words}",
        f'tlbench store restore BACKUP, or: sqlite3 {db} ".recover" | sqlite3 recovered.db',
    )


def stale_runs(tracker: Tracker, now: float | None = None) -> tuple[int, list[Problem]]:
    """RUNNING cell runs of every grid whose owner is provably gone or whose heartbeat stopped."""
    from tlbench.tracking.claims import last_beat

    now = time.time() if now is None else now
    running, found = 0, []
    for exp in tracker.grid_experiments():
        for run in tracker.runs(exp.experiment_id, "RUNNING"):
            running += 1
            t = run.data.tags
            if owner_gone(t):
                detail = f"its process (pid {t.get(tags.PID)} on {t.get(tags.HOST, 'this host')}) is gone"
            elif is_stale(last_beat(run), now):
                detail = f"no heartbeat for {now - last_beat(run):.0f} s"
            else:
                continue
            found.append(
                Problem(
                    "stale run",
                    f"{exp.name}: {run.info.run_name} ({run.info.run_id})",
                    detail,
                    "the next tlbench run of the grid marks it KILLED and continues it",
                )
            )
    return running, found


def orphaned_checkpoints(tracker: Tracker, root: Path) -> tuple[int, list[Problem]]:
    """Checkpoint folders (``<root>/<run id>/``) whose run will never be continued."""
    from mlflow.exceptions import MlflowException

    if not root.is_dir():
        return 0, []
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    found = []
    for folder in folders:
        try:
            run = tracker.get_run(folder.name)
        except MlflowException:
            why = "no run with this id in this store"
        else:
            if run.info.lifecycle_stage != "active":
                why = f"its run {run.info.run_name} is deleted"
            elif run.info.status in ENDED and not _resumes(run):
                why = f"its run {run.info.run_name} is {run.info.status}"
            else:
                continue
        fix = "delete the folder (unless a run of another store owns it)"
        found.append(Problem("orphaned checkpoint", str(folder), why, fix))
    return len(folders), found


def _resumes(run: object) -> bool:
    """A FAILED run that the next ``tlbench run`` continues (it failed for want of disk space)."""
    reason = run.data.tags.get(tags.REASON, "")  # type: ignore[attr-defined]
    return run.info.status == "FAILED" and reason.startswith(tags.DISK_FULL_REASON)  # type: ignore[attr-defined]


def _has_runs_table(db: Path) -> bool:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        return (
            conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone()
            is not None
        )


def check(uri: str, checkpoints: Path) -> Health:
    """The store's file (SQLite only), its stale runs and the orphans among ``checkpoints``."""
    from tlbench.tracking.store import Tracker

    health = Health(uri)
    db = sqlite_file(uri)
    if db is not None:
        if not db.is_file():
            raise NoStoreError(db, "nothing to check")
        problem = check_file(db)
        if problem is not None:
            health.problems.append(problem)  # its runs cannot be read: the rest waits for a sound file
            return health
        if not _has_runs_table(db):  # opening it would make it an MLflow store: check changes nothing
            raise NoStoreError(db, "the file holds no MLflow tables")
    tracker = Tracker(uri)
    health.runs_running, stale = stale_runs(tracker)
    health.checkpoints, orphans = orphaned_checkpoints(tracker, checkpoints)
    health.problems += stale + orphans
    return health
