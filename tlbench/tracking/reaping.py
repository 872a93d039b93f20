"""Runs whose own process could not end them, ended by whoever can.

Stale runs: a RUNNING cell run whose process is gone is marked KILLED. At once when its owner was
on this host and PID namespace and that PID is gone, a zombie or reused by another process
(``heartbeat.owner_gone``); else once its heartbeat is older than ``heartbeat.stale_after()`` *and*
this process has reached the server long enough to have received a beat (``heartbeat.is_dead``:
an outage ages every heartbeat, it proves nothing). The next ``tlbench run`` then continues it
from its checkpoint; a run must never stay RUNNING for ever.

Pending ends: a cell whose tracking calls ran out of retries (the server away longer than
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` allows) cannot say so to the server. Its process writes the
end it owes, KILLED with the reason, to a small JSON file under the checkpoint root
(``pending_folder``) and keeps trying to deliver it; whatever is left is delivered by the next
process that runs cells with that checkpoint root, once the server answers (``settle_pending``).
A record is applied only while the run is still the writer's (RUNNING or KILLED, same owner): a
run another process took over since is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlbench.tracking import tags
from tlbench.tracking.heartbeat import is_stale, owner_gone, staleness_trusted, wait_for_contact

if TYPE_CHECKING:
    from tlbench.tracking.store import Tracker

PENDING_DIR = ".pending-ends"


def reap_stale(tracker: Tracker, experiment_id: str, stale_after_s: float | None = None) -> list[str]:
    """Mark KILLED every RUNNING cell run of the experiment whose process is gone; their ids.
    Pending ends (of this process's checkpoint root) are delivered first."""
    from tlbench.tracking.claims import last_beat

    settle_pending(tracker, pending_folder())
    reaped: list[str] = []
    stale = []
    for run in tracker.runs(experiment_id, "RUNNING"):
        if owner_gone(run.data.tags):
            reason = f"its process (pid {run.data.tags.get(tags.PID)} on this host) is gone"
            tracker.end_run(run.info.run_id, "KILLED", reason)
            reaped.append(run.info.run_id)
        elif is_stale(last_beat(run), None, stale_after_s):
            stale.append(run)
    if stale and not staleness_trusted():
        wait_for_contact(f"{len(stale)} RUNNING run(s) without a recent heartbeat")
        stale = [tracker.get_run(r.info.run_id) for r in stale]
    now = time.time()
    for run in stale:
        if run.info.status != "RUNNING" or not is_stale(last_beat(run), now, stale_after_s):
            continue  # it beat again: alive, the outage was the server's
        reason = f"stale: no heartbeat for {now - last_beat(run):.0f}s (its process is gone)"
        tracker.end_run(run.info.run_id, "KILLED", reason)
        reaped.append(run.info.run_id)
    return reaped


# pending ends ----------------------------------------------------------------------------------
def pending_folder(checkpoint_dir: str | Path | None = None) -> Path:
    """Where ends owed to the server wait: beside the checkpoints the next attempt resumes from."""
    from tlbench.train.checkpoint import checkpoint_root

    return checkpoint_root(checkpoint_dir) / PENDING_DIR


def owe_end(
    folder: Path,
    uri: str,
    run_id: str,
    status: str,
    reason: str,
    claim_run_id: str | None = None,
    owner: dict[str, str] | None = None,
) -> Path:
    """Write down an end the server could not be told (atomically: a half record is never read)."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "uri": uri,
        "run_id": run_id,
        "status": status,
        "reason": reason,
        "claim_run_id": claim_run_id,
        "owner": owner or {},
        "written": time.time(),
    }
    path = folder / f"{run_id}.json"
    staged = folder / f".{run_id}.{os.getpid()}.tmp"
    staged.write_text(json.dumps(record))
    staged.replace(path)
    return path


def _still_ours(run: Any, owner: dict[str, str]) -> bool:
    """Is the run still the one the record's writer left (not finished, not taken over)?"""
    if run.info.lifecycle_stage != "active" or run.info.status not in ("RUNNING", "KILLED"):
        return False
    return all(run.data.tags.get(k) == v for k, v in owner.items() if k in (tags.PID, tags.PID_START))


def deliver(tracker: Tracker, path: Path) -> bool:
    """Apply one record; True once it is applied or moot (its file then removed). Raises what the
    server raises (still unreachable: the record stays)."""
    from mlflow.exceptions import MlflowException

    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if record.get("uri") != tracker.uri:
        return False
    try:
        run = tracker.client.get_run(record["run_id"])
    except MlflowException as err:
        if getattr(err, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
        run = None
    if run is not None and _still_ours(run, record.get("owner", {})):
        tracker.end_run(run.info.run_id, record["status"], record["reason"])
    if record.get("claim_run_id"):
        tracker.drop_claim(record["claim_run_id"])
    path.unlink(missing_ok=True)
    return True


def settle_pending(tracker: Tracker, folder: Path) -> list[str]:
    """Deliver every pending end of this store found in ``folder``; the run ids delivered. One
    that cannot be delivered yet (the server still away) stays for the next look."""
    done: list[str] = []
    if not folder.is_dir():
        return done
    for path in sorted(folder.glob("*.json")):
        with contextlib.suppress(Exception):
            if deliver(tracker, path):
                done.append(path.stem)
    return done
