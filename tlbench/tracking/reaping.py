"""Stale runs reaped: a RUNNING cell run whose process is gone is marked KILLED.

At once when its owner was on this host and PID namespace and that PID is gone, a zombie or reused
by another process (``heartbeat.owner_gone``); else once its heartbeat is older than
``heartbeat.stale_after()``. The next ``tlbench run`` then continues it from its checkpoint; a run
must never stay RUNNING for ever.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tlbench.tracking import tags
from tlbench.tracking.heartbeat import is_stale, owner_gone

if TYPE_CHECKING:
    from tlbench.tracking.store import Tracker


def reap_stale(tracker: Tracker, experiment_id: str, stale_after_s: float | None = None) -> list[str]:
    """Mark KILLED every RUNNING cell run of the experiment whose process is gone; their ids."""
    from tlbench.tracking.claims import last_beat

    now, reaped = time.time(), []
    for run in tracker.runs(experiment_id, "RUNNING"):
        if owner_gone(run.data.tags):
            reason = f"its process (pid {run.data.tags.get(tags.PID)} on this host) is gone"
        elif is_stale(last_beat(run), now, stale_after_s):
            reason = f"stale: no heartbeat for {now - last_beat(run):.0f}s (its process is gone)"
        else:
            continue
        tracker.end_run(run.info.run_id, "KILLED", reason)
        reaped.append(run.info.run_id)
    return reaped
