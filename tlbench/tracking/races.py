"""Writes that two processes may make to one run at once (workers finishing replicates of one
summary, two ``tune`` processes sharing a study's parent run) must not fail on the race.

MLflow's SQL store inserts a new tag with ``session.merge`` in ``set_tag``: two writers that both
find the key absent both insert it, and the loser fails on ``UNIQUE(key, run_uuid)``. Its
``log_batch`` path retries exactly that conflict, so every ``set_tag`` goes through it.
"""

from __future__ import annotations

from typing import Any


class RaceSafeClient:
    """An ``MlflowClient`` whose ``set_tag`` survives another process setting the same new tag."""

    def __init__(self, client: Any):
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(run_id, tags=[RunTag(key, str(value))], synchronous=synchronous)
