"""The MLflow client every tracker call goes through: ``client(uri)`` wraps MLflow's own twice.

``UninterruptedClient``: every call completes before a Ctrl-C / SIGTERM takes effect (a half-made
write could leave a run without its status). ``RaceSafeClient``: writes that two processes may
make to one run or experiment at once (workers finishing replicates of one summary, two ``tune``
processes sharing a study's parent run, machines joining a grid on a shared server) must not fail
on the race.

MLflow's SQL store inserts a new tag with ``session.merge``: two writers that both find the key
absent both insert it, and the loser fails on the table's unique key. Its ``log_batch`` path
retries exactly that conflict, so every run tag goes through it; experiment tags have no batch
call, so the losing write is made again (it then finds the row and updates it).

``FaultSayingClient``: an embedded store's SQLite file found damaged or its disk full mid-command
is one sentence naming the file (``damage``), not SQLAlchemy's traceback.
"""

from __future__ import annotations

import functools
import random
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tlbench.interrupts import uninterrupted
from tlbench.tracking.damage import sqlite_faults

# what the SQL stores say when an insert lost the race (SQLite, PostgreSQL, MySQL / MSSQL)
_LOST_INSERT = ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry", "IntegrityError")


def lost_insert_race(err: Exception) -> bool:
    return any(s in str(err) for s in _LOST_INSERT)


class RaceSafeClient:
    """An ``MlflowClient`` whose tag writes survive another process setting the same new tag."""

    def __init__(self, client: Any):
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(run_id, tags=[RunTag(key, str(value))], synchronous=synchronous)

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        from mlflow.exceptions import MlflowException

        for attempt in range(4):
            try:
                self._client.set_experiment_tag(experiment_id, key, value)
                return
            except MlflowException as err:
                if attempt == 3 or not lost_insert_race(err):
                    raise
                time.sleep(random.uniform(0.01, 0.1) * (attempt + 1))


class _EveryCallWithin:
    """An ``MlflowClient`` whose every method call runs inside ``self._within()``."""

    def __init__(self, client: Any):
        self._client = client

    def _within(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            with self._within():
                return attr(*args, **kwargs)

        return call


class UninterruptedClient(_EveryCallWithin):
    """An ``MlflowClient`` whose every call completes before a Ctrl-C / SIGTERM takes effect."""

    def _within(self) -> AbstractContextManager[Any]:
        return uninterrupted()


class FaultSayingClient(_EveryCallWithin):
    """An ``MlflowClient`` over a SQLite file whose "malformed" / "disk is full" errors name the
    file and the way out (``damage.sqlite_faults``), whichever call meets them."""

    def __init__(self, client: Any, db: Path):
        super().__init__(client)
        self._db = db

    def _within(self) -> AbstractContextManager[Any]:
        return sqlite_faults(self._db)
