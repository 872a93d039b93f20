"""One cell's MLflow run while a process works on it: params, per-epoch metrics, the dataset
input and system metrics, a heartbeat naming its owner, and its end (FINISHED only once complete).

After an outage of the tracking server the run may no longer be this process's: another one may
have found its heartbeat stale and marked it KILLED (a server that stayed away from this process
only, a partition) and perhaps resumed it. The first beat that lands after failed ones checks;
from then on every write raises ``RunTakenOver`` instead of writing into a run that is not ours.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from tlbench.diskspace import DiskFullError
from tlbench.tracking import tags
from tlbench.tracking.artifacts import write_artifacts
from tlbench.tracking.heartbeat import Heartbeat, beat_timeout, owner_tags
from tlbench.tracking.inputs import SystemMetrics, log_dataset_input
from tlbench.tracking.retries import write_tags_once

if TYPE_CHECKING:
    from tlbench.cells import Cell
    from tlbench.tracking.store import Tracker


class RunTakenOver(RuntimeError):
    """This process's run was ended or taken over by another process while the server was away."""


class CellRun:
    """One cell's MLflow run; also the ``Reporter`` that ``train.fit`` sends epochs to."""

    def __init__(self, tracker: Tracker, run_id: str, cell: Cell, *, resumed: bool = False):
        self.tracker = tracker
        self.client = tracker.client
        self.run_id = run_id
        self.cell = cell
        self.known_params: dict[str, str] = {}  # already logged (a resumed run): not logged again
        self.owner = owner_tags()
        self.pending_dir: Any = None  # where an end the server could not take is written (runner)
        self.lost: str | None = None  # why the run is no longer this process's (RunTakenOver)
        self.keeps_checkpoint = False  # its artifacts did not fit: the trained cell resumes from it
        self._heartbeat = Heartbeat(self._beat_as_owner(), on_recover=self._check_still_ours)
        self._system = SystemMetrics.start(tracker.uri, run_id, resumed=resumed)

    def _beat_as_owner(self) -> Callable[[], None]:
        """The heartbeat; its first beat also names this process the run's owner (whoever
        reopens a run, a study's parent included, takes it over), in one write. One try each
        (``retries.write_tags_once``): after an outage the next beat lands within an interval."""
        owner = dict(self.owner)

        def beat() -> None:
            stamp = {tags.HEARTBEAT: f"{time.time():.0f}", **owner}
            write_tags_once(self.client, self.run_id, stamp, beat_timeout())
            owner.clear()

        return beat

    @property
    def last_ack(self) -> float:
        """When the server last took this run's heartbeat (unix time)."""
        return self._heartbeat.last_ack

    def _check_still_ours(self) -> None:
        """After beats failed: did a reaper end the run, or another process take it over?"""
        run = self.client.get_run(self.run_id)
        pid = run.data.tags.get(tags.PID), run.data.tags.get(tags.PID_START)
        ours = pid == (self.owner.get(tags.PID), self.owner.get(tags.PID_START))
        if run.info.status != "RUNNING" or not ours:
            holder = "" if ours else f", now held by pid {pid[0]} on {run.data.tags.get(tags.HOST, '?')}"
            self.lost = (
                f"the run was marked {run.info.status} by another process while the tracking server was "
                f"unreachable from here ({run.data.tags.get(tags.REASON, 'no heartbeat')}{holder}); "
                "this process stopped the cell, the next tlbench run continues it from its checkpoint"
            )
            self._heartbeat.stop()

    def _ensure_ours(self) -> None:
        if self.lost is not None:
            raise RunTakenOver(self.lost)

    def _stop_watching(self) -> None:
        self._heartbeat.stop()
        self._system.stop()

    def set_tag(self, key: str, value: str) -> None:
        self._ensure_ours()
        self.client.set_tag(self.run_id, key, value)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self._ensure_ours()
        items = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in self.known_params]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        self._ensure_ours()
        ts = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()]
        )

    # Reporter protocol -----------------------------------------------------------------------
    def on_start(self, info: dict[str, Any]) -> None:
        self.set_tag(tags.DEVICE, str(info.get("device", "")))
        history = info.get("resumed_history")
        if history is not None:  # killed between checkpointing epochs and logging them: log them now
            self.set_tag(tags.RESUMED_FROM_EPOCH, str(info["resumed_from_epoch"]))
            logged = {m.step for m in self.client.get_metric_history(self.run_id, "train_loss")}
            for row in history:
                if int(row["epoch"]) not in logged:
                    self.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
        skip = ("params_trainable", "params_total", "device", "resumed_from_epoch", "resumed_history")
        self.log_params({k: v for k, v in info.items() if k not in skip})
        log_dataset_input(self.client, self.run_id, self.cell, info)

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.log_metrics(metrics, step=epoch)

    def on_epochs(self, epochs: list[tuple[int, dict[str, float]]]) -> None:
        """The epochs since the last checkpoint, in as few writes as MLflow's batch limit allows."""
        from mlflow.entities import Metric

        self._ensure_ours()
        ts = int(time.time() * 1000)
        points = [Metric(k, float(v), ts, e) for e, metrics in epochs for k, v in metrics.items()]
        for i in range(0, len(points), 1000):
            self.client.log_batch(self.run_id, metrics=points[i : i + 1000])

    # end of run ------------------------------------------------------------------------------
    def finish(
        self,
        result: Any,
        *,
        background: bool = False,
        light: bool = False,
        then: Callable[[], None] | None = None,
        times: Any = None,
    ) -> Future[None] | None:
        """Final metrics, then artifacts, then FINISHED: in that order, so FINISHED means complete.

        With ``background`` the artifacts (plots, checkpoint) are written on the tracker's
        writer thread while the next cell trains; the returned future completes when the run is
        FINISHED (or FAILED, if writing failed) and ``then`` (e.g. releasing the cell's claim)
        has run, whatever the outcome. ``light`` (tuning trials) writes only cell.yaml and
        history.csv: no plots, no checkpoint. ``times`` (``train.timings.CellTimes``): where the
        attempt's wall time went, logged as ``time.<phase>_s`` just before FINISHED (at the
        hand-off when the artifacts are written in the background, while the next cell trains).
        """
        last = result.history[-1]["epoch"] if result.history else 0
        metrics = result.final_metrics()
        for peak in ("peak_mem_mb", "peak_rss_mb"):  # CUDA's allocator; the process's resident set
            if peak in result.info:
                metrics[peak] = result.info[peak]
        self.log_metrics(metrics, step=int(last))
        self._log_extras(result)
        if background:
            self.log_times(times)
            return self.tracker.writer().submit(self._write_artifacts_and_close, result, light, then)
        self._write_artifacts_and_close(result, light, then, times)
        return None

    def log_times(self, times: Any) -> None:
        """This attempt's ``time.<phase>_s`` (each attempt adds a point: a resumed cell's history
        holds them all, its latest value is the last attempt's)."""
        if times is not None:
            metrics = times.metrics()
            step = len(self.client.get_metric_history(self.run_id, "time.wall_s"))
            self.log_metrics(metrics, step=step)

    def _log_extras(self, result: Any) -> None:
        """What only the end knows: params (an L-BFGS probe's chosen λ), curves stepped by their
        own index (``probe.val_acc`` over the λ grid) and the warnings, as a tag."""
        from mlflow.entities import Metric

        if result.params:
            self.log_params(result.params)
        ts = int(time.time() * 1000)
        points = [
            Metric(k, float(v), ts, i) for k, values in result.curves.items() for i, v in enumerate(values)
        ]
        for i in range(0, len(points), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=points[i : i + 1000])
        if result.warnings:
            self.set_tag(tags.WARNINGS, "\n".join(result.warnings)[:5000])

    def _write_artifacts_and_close(
        self, result: Any, light: bool = False, then: Callable[[], None] | None = None, times: Any = None
    ) -> None:
        try:
            try:
                self._ensure_ours()
                write_artifacts(self.client, self.run_id, self.cell, result, light)
            except BaseException as err:
                if not self.end_after_outage(err):
                    full = isinstance(err, DiskFullError)  # the trained cell's checkpoint kept to resume
                    self.keeps_checkpoint = full
                    self.fail(
                        "FAILED",
                        f"{tags.DISK_FULL_REASON + ': ' if full else ''}writing artifacts failed: "
                        f"{type(err).__name__}: {err}",
                    )
                raise
            self._stop_watching()
            self.log_times(times)
            self.client.set_terminated(self.run_id, "FINISHED")
        finally:
            if then is not None:  # in the same task: whoever waits on the future waits for it too
                then()

    def end(self, status: str = "FINISHED", note: str = "") -> None:
        """End the run without artifacts (a pruned trial, a study's parent run)."""
        self._stop_watching()
        if note:
            self.set_tag(tags.NOTE, note[:5000])
        self.client.set_terminated(self.run_id, status)

    def pause(self, metrics: dict[str, float], rung: str) -> None:
        """Between racing rungs: SCHEDULED (continued by the next rung, never taken for a crash or
        a result), its checkpoint kept, the compute so far logged."""
        self._heartbeat.stop()
        try:
            self.log_metrics(metrics, step=int(metrics.get("epochs_trained", 0)))
            self.set_tag(tags.RACE, tags.PAUSED)
            self.set_tag(tags.RACE_RUNG, rung)
        finally:
            self.client.set_terminated(self.run_id, "SCHEDULED")

    def fail(self, status: str, reason: str) -> None:
        """Mark FAILED or KILLED with the reason as a tag; never leave the run RUNNING (a run taken
        over by another process is left to it)."""
        self._stop_watching()
        if self.lost is not None:
            return
        try:
            self.set_tag(tags.REASON, reason[:5000])
        finally:
            self.client.set_terminated(self.run_id, status)

    def end_after_outage(self, err: BaseException, claim_run_id: str | None = None) -> str | None:
        """The run KILLED with why, after MLflow's retries ran out on ``err`` (None for any other
        error). The end is written down first (``reaping.owe_end``), then delivered as soon as the
        server answers: tried again for as long as the outage has lasted (a minute at least, each
        try with MLflow's own retries); if the server is still away, ``err`` is raised and the
        record waits for the next process (``reaping.settle_pending``). Returns the reason."""
        from tlbench.tracking.access import outage_reason
        from tlbench.tracking.reaping import deliver, owe_end, pending_folder

        reason = outage_reason(err, time.time() - self.last_ack)
        if reason is None:
            return None
        self._stop_watching()
        folder = self.pending_dir or pending_folder()
        record = owe_end(folder, self.tracker.uri, self.run_id, "KILLED", reason, claim_run_id, self.owner)
        sys.stderr.write(f"{self.cell.name}: {reason}; its run is marked KILLED once the server answers\n")
        deadline = time.time() + max(60.0, time.time() - self.last_ack)
        while True:
            try:
                deliver(self.tracker, record)
                return reason
            except Exception as again:
                from tlbench.tracking.access import unreachable

                if unreachable(again) is None or time.time() >= deadline:
                    raise err from None
                time.sleep(1.0)
