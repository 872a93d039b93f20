"""MLflow tracking: the store (``store``), the exactly-once claims (``claims``), the artifacts a
finished cell leaves (``artifacts``), the names of every tag (``tags``) and the heartbeat that
tells live processes from dead ones (``heartbeat``)."""

from __future__ import annotations

from tlbench.tracking.store import *  # noqa: F403  (transitional: split below)
from tlbench.tracking.store import (  # noqa: F401
    CELL_ID_TAG,
    CHECKPOINT_ARTIFACT,
    DEFAULT_STORE_DIR,
    GRID_TAG,
    HEARTBEAT_TAG,
    REASON_TAG,
    VARIANT_TAG,
    CellRun,
    Claim,
    Tracker,
    heartbeat_interval,
    resolve_tracking_uri,
    stale_after,
)
