"""MLflow tracking: the store and its cell runs (``store``), the exactly-once claims
(``claims``), the files a finished cell leaves (``artifacts``), the name of every tag
(``tags``) and the heartbeat that tells live processes from dead ones (``heartbeat``)."""

from __future__ import annotations

from tlbench.tracking.artifacts import CHECKPOINT_ARTIFACT
from tlbench.tracking.claims import Claim
from tlbench.tracking.heartbeat import Heartbeat, heartbeat_interval, is_stale, stale_after
from tlbench.tracking.store import DEFAULT_STORE_DIR, CellRun, Tracker, resolve_tracking_uri

__all__ = [
    "CHECKPOINT_ARTIFACT",
    "DEFAULT_STORE_DIR",
    "CellRun",
    "Claim",
    "Heartbeat",
    "Tracker",
    "heartbeat_interval",
    "is_stale",
    "resolve_tracking_uri",
    "stale_after",
]
