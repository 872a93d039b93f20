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
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

import tlbench
from tlbench.grid import Cell

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # our own progress display is enough

DEFAULT_STORE_DIR = Path("mlruns")
CELL_ID_TAG = "tlbench.cell_id"
GRID_TAG = "tlbench.grid"
REASON_TAG = "tlbench.failure_reason"
VARIANT_TAG = "tlbench.variant"
HEARTBEAT_TAG = "tlbench.heartbeat"  # unix time, refreshed while the run's process is alive


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
                self.client = MlflowClient(tracking_uri=self.uri)
                self.client.search_experiments(max_results=1)
        else:
            self.client = MlflowClient(tracking_uri=self.uri)
        self._writer: ThreadPoolExecutor | None = None

    def writer(self) -> ThreadPoolExecutor:
        """One background thread that writes finished cells' artifacts, in order."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tlbench-artifacts")
        return self._writer

    def experiment_id(self, grid: str) -> str:
        """The grid's experiment, created on first use (safe if two processes race to create it)."""
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(grid)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        try:
            return self.client.create_experiment(
                grid, artifact_location=_local_artifact_root(self.uri), tags={GRID_TAG: grid}
            )
        except MlflowException:
            exp = self.client.get_experiment_by_name(grid)
            if exp is None:
                raise
            return exp.experiment_id

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


class CellRun:
    """One cell's MLflow run; also the ``Reporter`` that ``train.fit`` sends epochs to."""

    def __init__(self, tracker: Tracker, run_id: str, cell: Cell):
        self.tracker = tracker
        self.client = tracker.client
        self.run_id = run_id
        self.cell = cell
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

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
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
        self.log_params(
            {k: v for k, v in info.items() if k not in ("params_trainable", "params_total", "device")}
        )

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.log_metrics(metrics, step=epoch)

    # end of run ------------------------------------------------------------------------------
    def finish(self, result: Any, *, background: bool = False, light: bool = False) -> Future[None] | None:
        """Final metrics, then artifacts, then FINISHED: in that order, so FINISHED means complete.

        With ``background`` the artifacts (plots, checkpoint) are written on the tracker's
        writer thread while the next cell trains; the returned future completes when the run is
        FINISHED (or FAILED, if writing failed). ``light`` (tuning trials) writes only cell.yaml
        and history.csv: no plots, no checkpoint.
        """
        last = result.history[-1]["epoch"] if result.history else 0
        metrics = result.final_metrics()
        if "peak_mem_mb" in result.info:
            metrics["peak_mem_mb"] = result.info["peak_mem_mb"]
        self.log_metrics(metrics, step=int(last))
        if background:
            return self.tracker.writer().submit(self._write_artifacts_and_close, result, light)
        self._write_artifacts_and_close(result, light)
        return None

    def _write_artifacts_and_close(self, result: Any, light: bool = False) -> None:
        try:
            self._write_artifacts(result, light)
        except BaseException as err:
            self.fail("FAILED", f"writing artifacts failed: {type(err).__name__}: {err}")
            raise
        self._stop.set()
        self.client.set_terminated(self.run_id, "FINISHED")

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
