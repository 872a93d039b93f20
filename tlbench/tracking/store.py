"""MLflow tracking: one experiment per grid, one run per cell, found again by the cell id.

Uses ``MlflowClient`` (not the fluent API's global active run) so several cells, processes or
machines can write to one store without sharing state. The default store is embedded:
``sqlite:///mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

import tlbench
from tlbench.grid import Cell
from tlbench.interrupts import UninterruptedClient

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # our own progress display is enough

DEFAULT_STORE_DIR = Path("mlruns")
CELL_ID_TAG = "tlbench.cell_id"
GRID_TAG = "tlbench.grid"
REASON_TAG = "tlbench.failure_reason"
VARIANT_TAG = "tlbench.variant"
HEARTBEAT_TAG = "tlbench.heartbeat"  # unix time, refreshed while the run's process is alive
CLAIMS_EXPERIMENT = "tlbench-claims"  # one short-lived run per cell being worked on, anywhere
CLAIM_TAG = "tlbench.claim"
RESUMES_TAG = "tlbench.resumes"


def heartbeat_interval() -> float:
    """Seconds between heartbeats (``TLBENCH_HEARTBEAT_S``, default 30); see ``stale_after``."""
    return max(
        0.2, float(os.environ.get("TLBENCH_HEARTBEAT_S", "30"))
    )  # e.g. "tuned": a cell trained with other hyper-parameters, kept apart


def stale_after() -> float:
    """Seconds without a heartbeat after which a run's (or trial's) process is taken as gone:
    three missed beats plus a margin for a slow store (10 s, less for sub-second test beats)."""
    beat = heartbeat_interval()
    return 3 * beat + min(10.0, 5 * beat)


def claim_grace(uri: str) -> float:
    """Seconds a new claim waits before it looks for rivals (``TLBENCH_CLAIM_GRACE_S``): with one
    clock (a local store) none is needed; across machines it absorbs their clock skew."""
    env = os.environ.get("TLBENCH_CLAIM_GRACE_S")
    if env is not None:
        return float(env)
    return 0.0 if uri.startswith("sqlite:") else 2.0


CHECKPOINT_ARTIFACT = "checkpoint/best.safetensors"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``--tracking-uri`` > ``MLFLOW_TRACKING_URI`` > the embedded store under ``./mlruns``."""
    if uri:
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    store = DEFAULT_STORE_DIR.resolve()
    return f"sqlite:///{store / 'mlflow.db'}"


def _local_artifact_root(uri: str) -> str | None:
    """For an embedded SQLite store, keep artifacts beside the db (not in the cwd)."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent / "artifacts").resolve().as_uri()
    return None


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """The checkout's commit, looked up once per process (it was a subprocess per cell)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


class Tracker:
    """The MLflow store a grid's runs live in."""

    def __init__(self, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = resolve_tracking_uri(uri)
        if self.uri.startswith("sqlite:///"):
            from filelock import FileLock

            db = Path(self.uri.removeprefix("sqlite:///"))
            db.parent.mkdir(parents=True, exist_ok=True)
            # MLflow creates and migrates the tables when the client opens the store; two processes
            # doing it at once on a new store collide ("duplicate column"), so that is serialized
            with FileLock(str(db) + ".init.lock", timeout=300):
                client = MlflowClient(tracking_uri=self.uri)
                client.search_experiments(max_results=1)
        else:
            client = MlflowClient(tracking_uri=self.uri)
        # Ctrl-C / SIGTERM never land inside a store write (they would leave SQLite locked)
        self.client = UninterruptedClient(client)
        self._writer: ThreadPoolExecutor | None = None

    def writer(self) -> ThreadPoolExecutor:
        """One background thread that writes finished cells' artifacts, in order."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tlbench-artifacts")
        return self._writer

    def experiment_id(self, grid: str) -> str:
        """The grid's experiment, created on first use (safe if two processes race to create it)."""
        return self._experiment(grid, {GRID_TAG: grid})

    def _experiment(self, name: str, tags: dict[str, str]) -> str:
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        try:
            return self.client.create_experiment(
                name, artifact_location=_local_artifact_root(self.uri), tags=tags
            )
        except MlflowException:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    # claims: exactly one process works on a cell at a time, wherever it runs ---------------------
    def claim(
        self, experiment_id: str, cell: Cell, variant: str | None = None, *, force: bool = False
    ) -> Claim | None:
        """Claim a cell for this process, or None when it is FINISHED (unless ``force``) or a live
        process holds it.

        A claim is a run in the ``tlbench-claims`` experiment. Every claimant creates one, waits
        ``claim_grace``, then looks at the live claims (fresh heartbeat) of the same cell: the
        earliest (start time, then run id) wins, and a claim that already won always wins. All
        claimants read the same rows of the same store, so they agree on the winner.
        """
        from mlflow.exceptions import MlflowException

        if not force and cell.id in self.finished_runs(experiment_id, variant=variant):
            return None
        key = f"{experiment_id}/{cell.id}/{variant or ''}"
        claims_exp = self._experiment(CLAIMS_EXPERIMENT, {})
        run = self.client.create_run(
            claims_exp, run_name=cell.name, tags={CLAIM_TAG: key, "tlbench.pid": str(os.getpid())}
        )
        claim = Claim(self, run.info.run_id)
        grace = claim_grace(self.uri)
        if grace:
            time.sleep(grace)
        rivals = self.client.search_runs(
            [claims_exp], filter_string=f"tags.`{CLAIM_TAG}` = '{key}' and attributes.status = 'RUNNING'"
        )
        now, limit = time.time(), stale_after()
        live = []
        for r in rivals:
            beat = float(r.data.tags.get(HEARTBEAT_TAG, r.info.start_time / 1000))
            if now - beat <= limit:
                live.append(r)
            elif r.info.run_id != claim.run_id:  # its process is gone: clear the way
                with contextlib.suppress(MlflowException):
                    self.client.delete_run(r.info.run_id)
        won = [r for r in live if r.data.tags.get("tlbench.won") and r.info.run_id != claim.run_id]
        first = min(live, key=lambda r: (r.info.start_time, r.info.run_id), default=None)
        if won or (first is not None and first.info.run_id != claim.run_id):
            claim.release()
            return None
        self.client.set_tag(claim.run_id, "tlbench.won", "1")
        if not force and cell.id in self.finished_runs(experiment_id, variant=variant):  # done meanwhile
            claim.release()
            return None
        return claim

    def is_claimed(self, experiment_id: str, cell_id: str, variant: str | None = None) -> bool:
        """Does a live process (fresh heartbeat) hold this cell right now?"""
        exp = self.client.get_experiment_by_name(CLAIMS_EXPERIMENT)
        if exp is None:
            return False
        key = f"{experiment_id}/{cell_id}/{variant or ''}"
        now, limit = time.time(), stale_after()
        for r in self.client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`{CLAIM_TAG}` = '{key}' and attributes.status = 'RUNNING'",
        ):
            if now - float(r.data.tags.get(HEARTBEAT_TAG, r.info.start_time / 1000)) <= limit:
                return True
        return False

    def resumable_run(self, experiment_id: str, cell: Cell, variant: str | None = None) -> Any | None:
        """The cell's newest run if it was KILLED (interrupted, reaped, its worker died) or is
        RUNNING without a heartbeat: the next attempt continues it from its checkpoint."""
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{CELL_ID_TAG}` = '{cell.id}'",
            order_by=["start_time DESC"],
            max_results=200,
        )
        for run in runs:
            if run.data.tags.get(VARIANT_TAG) != variant:
                continue
            if run.info.status == "RUNNING":  # the caller holds the claim: a stale one is dead
                beat = float(run.data.tags.get(HEARTBEAT_TAG, run.info.start_time / 1000))
                if time.time() - beat > stale_after():
                    self.client.set_tag(run.info.run_id, REASON_TAG, "stale: its process is gone")
                    self.client.set_terminated(run.info.run_id, "KILLED")
                    return self.client.get_run(run.info.run_id)
            return run if run.info.status == "KILLED" else None
        return None

    def reopen_cell(self, run: Any, cell: Cell) -> CellRun:
        """Continue a KILLED run: RUNNING again, its failure reason cleared, resumes counted."""
        from mlflow.exceptions import MlflowException

        run_id = run.info.run_id
        self.client.update_run(run_id, status="RUNNING")
        with contextlib.suppress(MlflowException):
            self.client.delete_tag(run_id, REASON_TAG)
        self.client.set_tag(run_id, RESUMES_TAG, str(int(run.data.tags.get(RESUMES_TAG, "0")) + 1))
        self.client.set_tag(run_id, "tlbench.pid", str(os.getpid()))
        self.client.set_tag(run_id, "tlbench.host", socket.gethostname())
        cell_run = CellRun(self, run_id, cell)
        cell_run.known_params = dict(run.data.params)
        return cell_run

    def runs(self, experiment_id: str, status: str | None = None) -> list[Any]:
        """Every tlbench cell run of an experiment (optionally of one status), newest first."""
        filt = f"tags.`{CELL_ID_TAG}` != ''"
        if status:
            filt += f" and attributes.status = '{status}'"
        out: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [experiment_id],
                filter_string=filt,
                max_results=5000,
                order_by=["start_time DESC"],
                page_token=token,
            )
            out.extend(page)
            token = page.token
            if not token:
                return out

    def finished_runs(self, experiment_id: str, variant: str | None = None) -> dict[str, Any]:
        """cell id -> its newest FINISHED run (of the plain cell, or of one ``variant`` of it)."""
        done: dict[str, Any] = {}
        for run in self.runs(experiment_id, "FINISHED"):
            if run.data.tags.get(VARIANT_TAG) == variant:
                done.setdefault(run.data.tags[CELL_ID_TAG], run)
        return done

    def start_cell(
        self,
        experiment_id: str,
        cell: Cell,
        grid_file: str | None = None,
        variant: str | None = None,
        *,
        parent_run_id: str | None = None,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> CellRun:
        """A RUNNING run for ``cell`` (nested under ``parent_run_id`` if given) with its params."""
        extra = tags or {}
        tags = {
            CELL_ID_TAG: cell.id,
            GRID_TAG: cell.grid,
            "tlbench.cell": cell.name,
            "tlbench.version": tlbench.__version__,
            "tlbench.pid": str(os.getpid()),
            "tlbench.host": socket.gethostname(),
        }
        commit = _git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        if grid_file:
            tags["tlbench.grid_file"] = grid_file
        if variant:
            tags[VARIANT_TAG] = variant
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        tags.update(extra)
        run_name = run_name or (cell.name if not variant else f"{cell.name} [{variant}]")
        run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
        cell_run = CellRun(self, run.info.run_id, cell)
        cell_run.log_params({**cell.flat_params(), **(params or {})})
        return cell_run

    def reap_stale(self, experiment_id: str, stale_after_s: float | None = None) -> list[str]:
        """Mark KILLED every RUNNING cell run whose heartbeat stopped: its process is gone
        (SIGKILL, OOM-kill, a lost node), and a run must never stay RUNNING for ever."""
        limit = stale_after_s if stale_after_s is not None else stale_after()
        now = time.time()
        reaped = []
        for run in self.runs(experiment_id, "RUNNING"):
            beat = float(run.data.tags.get(HEARTBEAT_TAG, run.info.start_time / 1000))
            if now - beat > limit:
                self.client.set_tag(
                    run.info.run_id,
                    REASON_TAG,
                    f"stale: no heartbeat for {now - beat:.0f}s (its process is gone)",
                )
                self.client.set_terminated(run.info.run_id, "KILLED")
                reaped.append(run.info.run_id)
        return reaped

    def run_checkpoint(self, run_id: str, dst_dir: Path) -> Path:
        """The best checkpoint of any earlier FINISHED tlbench run (``weights: run:ID``), checked first."""
        from mlflow.exceptions import MlflowException

        from tlbench.models import WeightsError

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            raise WeightsError(
                f"run:{run_id}: no such run in {self.uri} (use --tracking-uri for another store)"
            ) from None
        if run.info.status != "FINISHED":
            raise WeightsError(f"run:{run_id} ({run.info.run_name}) is {run.info.status}, not FINISHED")
        try:
            return self.download_checkpoint(run_id, dst_dir)
        except (MlflowException, OSError):
            raise WeightsError(f"run:{run_id} ({run.info.run_name}) has no {CHECKPOINT_ARTIFACT}") from None

    def download_checkpoint(self, run_id: str, dst_dir: Path) -> Path:
        """The best checkpoint of a finished run, as a local file (downloaded if the store is remote)."""
        dst_dir.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(run_id, CHECKPOINT_ARTIFACT, str(dst_dir)))


class Claim:
    """This process's hold on a cell: a heartbeat while held, the claim run deleted on release."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.client = tracker.client
        self.run_id = run_id
        self._stop = threading.Event()
        self.client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.3f}")
        threading.Thread(target=self._heartbeat, name="tlbench-claim", daemon=True).start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(heartbeat_interval()):
            with contextlib.suppress(Exception):
                self.client.set_tag(self.run_id, HEARTBEAT_TAG, f"{time.time():.3f}")

    def release(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        with contextlib.suppress(Exception):
            self.client.set_terminated(self.run_id, "FINISHED")
            self.client.delete_run(self.run_id)


class CellRun:
    """One cell's MLflow run; also the ``Reporter`` that ``train.fit`` sends epochs to."""

    def __init__(self, tracker: Tracker, run_id: str, cell: Cell):
        self.tracker = tracker
        self.client = tracker.client
        self.run_id = run_id
        self.cell = cell
        self.known_params: dict[str, str] = {}  # already logged (a resumed run): not logged again
        self._stop = threading.Event()
        self._beat()
        threading.Thread(target=self._heartbeat, name="tlbench-heartbeat", daemon=True).start()

    def _beat(self) -> None:
        self.client.set_tag(self.run_id, HEARTBEAT_TAG, f"{time.time():.0f}")

    def _heartbeat(self) -> None:
        while not self._stop.wait(heartbeat_interval()):
            with contextlib.suppress(Exception):  # a store hiccup must not kill training; next beat retries
                self._beat()

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in self.known_params]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()]
        )

    # Reporter protocol -----------------------------------------------------------------------
    def on_start(self, info: dict[str, Any]) -> None:
        self.client.set_tag(self.run_id, "tlbench.device", str(info.get("device", "")))
        last = info.get("resumed_last_epoch")
        if last is not None:  # killed between checkpointing an epoch and logging it: log it now
            self.client.set_tag(self.run_id, "tlbench.resumed_from_epoch", str(info["resumed_from_epoch"]))
            step = int(last["epoch"])
            logged = {m.step for m in self.client.get_metric_history(self.run_id, "val_acc")}
            if step not in logged:
                self.log_metrics({k: v for k, v in last.items() if k != "epoch"}, step=step)
        skip = ("params_trainable", "params_total", "device", "resumed_from_epoch", "resumed_last_epoch")
        self.log_params({k: v for k, v in info.items() if k not in skip})

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.log_metrics(metrics, step=epoch)

    # end of run ------------------------------------------------------------------------------
    def finish(
        self,
        result: Any,
        *,
        background: bool = False,
        light: bool = False,
        then: Callable[[], None] | None = None,
    ) -> Future[None] | None:
        """Final metrics, then artifacts, then FINISHED: in that order, so FINISHED means complete.

        With ``background`` the artifacts (plots, checkpoint) are written on the tracker's
        writer thread while the next cell trains; the returned future completes when the run is
        FINISHED (or FAILED, if writing failed) and ``then`` (e.g. releasing the cell's claim)
        has run, whatever the outcome. ``light`` (tuning trials) writes only cell.yaml and
        history.csv: no plots, no checkpoint.
        """
        last = result.history[-1]["epoch"] if result.history else 0
        metrics = result.final_metrics()
        if "peak_mem_mb" in result.info:
            metrics["peak_mem_mb"] = result.info["peak_mem_mb"]
        self.log_metrics(metrics, step=int(last))
        if background:
            return self.tracker.writer().submit(self._write_artifacts_and_close, result, light, then)
        self._write_artifacts_and_close(result, light, then)
        return None

    def _write_artifacts_and_close(
        self, result: Any, light: bool = False, then: Callable[[], None] | None = None
    ) -> None:
        try:
            try:
                self._write_artifacts(result, light)
            except BaseException as err:
                self.fail("FAILED", f"writing artifacts failed: {type(err).__name__}: {err}")
                raise
            self._stop.set()
            self.client.set_terminated(self.run_id, "FINISHED")
        finally:
            if then is not None:  # in the same task: whoever waits on the future waits for it too
                then()

    def _write_artifacts(self, result: Any, light: bool = False) -> None:
        from tlbench import plots
        from tlbench.models import save_weights_dict

        with tempfile.TemporaryDirectory(prefix="tlbench-") as tmp:
            d = Path(tmp)
            (d / "cell.yaml").write_text(yaml.safe_dump(self.cell.to_dict(), sort_keys=False))
            with open(d / "history.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(result.history[0]))
                w.writeheader()
                w.writerows(result.history)
            if light:
                self.client.log_artifacts(self.run_id, str(d))
                return
            with open(d / "per_class.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["class", "support", "correct", "accuracy"])
                for i, name in enumerate(result.classes):
                    support = int(result.confusion[i].sum())
                    w.writerow([name, support, int(result.confusion[i, i]), f"{result.per_class_acc[i]:.4f}"])
            plots.learning_curves(result.history, d / "learning_curves.png", self.cell.name)
            plots.confusion_matrix(
                result.confusion, result.classes, d / "confusion_matrix.png", self.cell.name
            )
            (d / "checkpoint").mkdir()
            save_weights_dict(result.best_state, d / CHECKPOINT_ARTIFACT)
            self.client.log_artifacts(self.run_id, str(d))

    def end(self, status: str = "FINISHED", note: str = "") -> None:
        """End the run without artifacts (a pruned trial, a study's parent run)."""
        self._stop.set()
        if note:
            self.client.set_tag(self.run_id, "tlbench.note", note[:5000])
        self.client.set_terminated(self.run_id, status)

    def fail(self, status: str, reason: str) -> None:
        """Mark FAILED or KILLED with the reason as a tag; never leave the run RUNNING."""
        self._stop.set()
        try:
            self.client.set_tag(self.run_id, REASON_TAG, reason[:5000])
        finally:
            self.client.set_terminated(self.run_id, status)
