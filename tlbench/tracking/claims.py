"""Exactly once: the protocol by which one process, anywhere, works on a cell at a time.

Contract (every executor and every store relies on it):

- ``claim(...)`` returns a ``Claim`` to exactly one of any number of processes that ask for the
  same (experiment, cell, variant) at once, on one machine or many, on a local SQLite store or a
  shared MLflow server; all others get ``None``. It also returns ``None`` when the cell already
  has a FINISHED run (unless ``force``), so a caller that got a claim must train.
- A claim is a run in the internal ``zz-tlbench-internal-claims`` experiment, tagged with the key
  ``experiment/cell/variant``, its owner (host identity, PID, start time) and a heartbeat
  (``tlbench.tracking.heartbeat``). Every claimant
  creates its claim run, waits ``claim_grace`` (clock skew between machines), then looks at the
  live claims of the key: the earliest (start time, then run id) wins, and a claim already
  marked as won always wins. All claimants read the same rows of one store, so they agree.
- A claim whose heartbeat went stale, or whose owner is provably gone from this very host and PID
  namespace (``heartbeat.owner_gone``: a SIGKILLed run restarted at once), belongs to a dead
  process: any claimant deletes it, and the cell's run is resumed by the winner
  (``Tracker.resumable_run``).
- ``Claim.release()`` ends the claim run FINISHED and deletes it; it is called once the cell's
  run is FINISHED, FAILED or KILLED, so a released cell is never also RUNNING without a live
  claim. Deleting needs MANAGE on the claims experiment (MLflow's EDIT may not delete runs):
  ``tlbench grant`` gives workers MANAGE there (only there: it holds no results). A claim its
  owner could not delete (a worker granted EDIT before) stays FINISHED, never live, and is
  deleted by the next process that may (``sweep_released``).
- A heartbeat that went stale during an outage of the tracking server proves nothing: a claimant
  that has not reached the server long enough waits (``heartbeat.wait_for_contact``) before it
  takes a stale claim for dead.

Chosen over file locks because it needs no shared filesystem: it works the same wherever the
MLflow store is.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING, Any

from tlbench.tracking import tags
from tlbench.tracking.heartbeat import (
    Heartbeat,
    beat_timeout,
    is_dead,
    is_stale,
    owner_gone,
    owner_tags,
    staleness_trusted,
    wait_for_contact,
)
from tlbench.tracking.retries import write_tags_once

if TYPE_CHECKING:
    from tlbench.cells import Cell
    from tlbench.tracking.store import Tracker


def claim_grace(uri: str) -> float:
    """Seconds a new claim waits before it looks for rivals (``TLBENCH_CLAIM_GRACE_S``): with one
    clock (a local store) none is needed; across machines it absorbs their clock skew."""
    env = os.environ.get("TLBENCH_CLAIM_GRACE_S")
    if env is not None:
        return float(env)
    return 0.0 if uri.startswith("sqlite:") else 2.0


def claim_key(experiment_id: str, cell_id: str, variant: str | None) -> str:
    return f"{experiment_id}/{cell_id}/{variant or ''}"


def last_beat(run: Any) -> float:
    """A run's last heartbeat (unix time); its start for one that has not beaten yet."""
    return float(run.data.tags.get(tags.HEARTBEAT, run.info.start_time / 1000))


class Claim:
    """This process's hold on a cell: a heartbeat while held, the claim run deleted on release."""

    def __init__(self, client: Any, run_id: str):
        self.client = client
        self.run_id = run_id
        self._heartbeat = Heartbeat(
            lambda: write_tags_once(client, run_id, {tags.HEARTBEAT: f"{time.time():.3f}"}, beat_timeout()),
            name="tlbench-claim",
        )

    def release(self) -> None:
        if self._heartbeat.stopped:
            return
        self._heartbeat.stop()
        with contextlib.suppress(Exception):
            self.client.set_terminated(self.run_id, "FINISHED")
            self.client.delete_run(self.run_id)  # refused without MANAGE: swept later


def _alive(run: Any, now: float | None = None) -> bool:
    return not is_dead(run.data.tags, last_beat(run), now)


def _unproven(run: Any, now: float | None = None) -> bool:
    """Alive only because this process has not reached the server long enough to tell."""
    return not owner_gone(run.data.tags) and is_stale(last_beat(run), now) and not staleness_trusted(now)


CLAIMS_NOTE = (
    "tlbench's internal bookkeeping, not results: one short-lived run per cell being trained "
    "anywhere (exactly once). Safe to ignore; its runs delete themselves."
)


_SWEPT: set[tuple[str, str]] = set()


def claims_experiment(tracker: Tracker) -> str:
    """The claims' experiment, created on first use (before any grid's, so the UI's newest-first
    list shows it last); the pre-#16 ``tlbench-claims`` is retired then if no live claim is in it."""
    from mlflow.exceptions import MlflowException

    exp = tracker.client.get_experiment_by_name(tags.CLAIMS_EXPERIMENT)
    if exp is not None and exp.lifecycle_stage == "active":
        if (tracker.uri, exp.experiment_id) not in _SWEPT:  # once per process and store
            _SWEPT.add((tracker.uri, exp.experiment_id))
            sweep_released(tracker, exp.experiment_id)
        return exp.experiment_id
    exp_id = tracker.experiment(tags.CLAIMS_EXPERIMENT, {tags.EXPERIMENT_NOTE: CLAIMS_NOTE})
    legacy = tracker.client.get_experiment_by_name(tags.LEGACY_CLAIMS_EXPERIMENT)
    if legacy is not None and legacy.lifecycle_stage == "active":
        running = tracker.client.search_runs([legacy.experiment_id], "attributes.status = 'RUNNING'")
        if not any(_alive(r) for r in running):
            with contextlib.suppress(MlflowException):
                tracker.client.delete_experiment(legacy.experiment_id)
    return exp_id


def sweep_released(tracker: Tracker, claims_exp: str) -> int:
    """Delete released claims (FINISHED) their owners were not allowed to delete; stops at the
    first refusal (this user may not either). How many were deleted."""
    from mlflow.exceptions import MlflowException

    deleted = 0
    with contextlib.suppress(MlflowException):
        for run in tracker.client.search_runs(
            [claims_exp], "attributes.status = 'FINISHED'", max_results=1000
        ):
            tracker.client.delete_run(run.info.run_id)
            deleted += 1
    return deleted


def _live_claims(tracker: Tracker, claims_exp: str, key: str, own: str | None = None) -> list[Any]:
    """The key's claims whose process is alive; stale ones (not ``own``) are deleted on the way."""
    from mlflow.exceptions import MlflowException

    query = f"tags.`{tags.CLAIM}` = '{key}' and attributes.status = 'RUNNING'"
    rivals = tracker.client.search_runs([claims_exp], filter_string=query)
    if any(_unproven(r) for r in rivals if r.info.run_id != own):
        wait_for_contact("a claim on this cell has no recent heartbeat")
        rivals = tracker.client.search_runs([claims_exp], filter_string=query)
    now, live = time.time(), []
    for r in rivals:
        if _alive(r, now):
            live.append(r)
        elif r.info.run_id != own:  # its process is gone: clear the way
            with contextlib.suppress(MlflowException):
                tracker.client.delete_run(r.info.run_id)
    return live


def claim(
    tracker: Tracker,
    experiment_id: str,
    cell: Cell,
    variant: str | None = None,
    *,
    force: bool = False,
    session: str = "",
) -> Claim | None:
    """Claim ``cell`` for this process, or None (FINISHED and not ``force``, or held elsewhere).
    ``session`` names the invocation the process works for (see ``holder_session``)."""
    if not force and tracker.finished_run(experiment_id, cell.id, variant) is not None:
        return None
    key = claim_key(experiment_id, cell.id, variant)
    claims_exp = claims_experiment(tracker)
    run = tracker.client.create_run(
        claims_exp,
        run_name=cell.name,
        tags={tags.CLAIM: key, tags.CLAIM_SESSION: session, **owner_tags()},
    )
    held = Claim(tracker.client, run.info.run_id)
    grace = claim_grace(tracker.uri)
    if grace:
        time.sleep(grace)
    live = _live_claims(tracker, claims_exp, key, own=held.run_id)
    won = [r for r in live if r.data.tags.get(tags.CLAIM_WON) and r.info.run_id != held.run_id]
    first = min(live, key=lambda r: (r.info.start_time, r.info.run_id), default=None)
    if won or (first is not None and first.info.run_id != held.run_id):
        held.release()
        return None
    tracker.client.set_tag(held.run_id, tags.CLAIM_WON, "1")
    if not force and tracker.finished_run(experiment_id, cell.id, variant) is not None:  # done meanwhile
        held.release()
        return None
    return held


def holder_session(
    tracker: Tracker, experiment_id: str, cell_id: str, variant: str | None = None
) -> str | None:
    """The session of the live claim that holds the cell (the earliest), or None if none does."""
    exp = tracker.client.get_experiment_by_name(tags.CLAIMS_EXPERIMENT)
    if exp is None:
        return None
    key = claim_key(experiment_id, cell_id, variant)
    rivals = tracker.client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{tags.CLAIM}` = '{key}' and attributes.status = 'RUNNING'"
    )
    live = sorted((r for r in rivals if _alive(r)), key=lambda r: (r.info.start_time, r.info.run_id))
    return live[0].data.tags.get(tags.CLAIM_SESSION, "") if live else None


def is_claimed(tracker: Tracker, experiment_id: str, cell_id: str, variant: str | None = None) -> bool:
    """Does a live process (fresh heartbeat) hold this cell right now?"""
    exp = tracker.client.get_experiment_by_name(tags.CLAIMS_EXPERIMENT)
    if exp is None:
        return False
    key = claim_key(experiment_id, cell_id, variant)
    rivals = tracker.client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{tags.CLAIM}` = '{key}' and attributes.status = 'RUNNING'"
    )
    return any(_alive(r) for r in rivals)
