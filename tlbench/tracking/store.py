"""MLflow tracking: one experiment per grid, one run per cell, found again by the cell id.

Uses ``MlflowClient`` (not the fluent API's global active run) so several cells, processes or
machines can write to one store without sharing state. The default store is embedded:
``sqlite:///mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlbench.tracking import process, tags
from tlbench.tracking.artifacts import CHECKPOINT_ARTIFACT
from tlbench.tracking.cellrun import CellRun
from tlbench.tracking.claims import Claim, claim, claims_experiment, is_claimed, last_beat
from tlbench.tracking.client import FaultSayingClient, RaceSafeClient, UninterruptedClient
from tlbench.tracking.damage import check_on_open, sqlite_faults, sqlite_file
from tlbench.tracking.heartbeat import is_dead, owner_tags
from tlbench.tracking.view import experiment_view_tags, short_run_name
from tlbench.version import __version__

if TYPE_CHECKING:
    from tlbench.cells import Cell

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # our own progress display is enough

DEFAULT_STORE_DIR = Path("mlruns")


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``--tracking-uri`` > ``MLFLOW_TRACKING_URI`` > the embedded store under ``./mlruns``."""
    if uri:
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    store = DEFAULT_STORE_DIR.resolve()
    return f"sqlite:///{store / 'mlflow.db'}"


def local_artifact_dir(uri: str) -> Path | None:
    """For an embedded SQLite store, its artifacts folder: beside the db (not in the cwd)."""
    db = sqlite_file(uri)
    return (db.parent / "artifacts").resolve() if db is not None else None


def _local_artifact_root(uri: str) -> str | None:
    folder = local_artifact_dir(uri)
    return folder.as_uri() if folder is not None else None


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
    """The MLflow store a grid's runs live in: the one door to it (nothing outside ``tracking/``
    touches MLflow's client).

    Guarantees, which every executor relies on:

    - **A RUNNING run has a live owner.** A cell run records its owner (host identity, PID and
      start time) and beats while its process lives (``heartbeat``); a process that finds a
      RUNNING run whose owner is provably gone from this host, or whose heartbeat went stale, marks
      it KILLED (``reaping``), so no run stays RUNNING for ever.
    - **FINISHED means complete**: final metrics, then artifacts, then the status (``CellRun``).
    - **Exactly once**: of any number of processes claiming a cell, one gets it (``claims``); it
      then continues the cell's KILLED or SCHEDULED run from its checkpoint, or starts a new one.
    - **Writes survive Ctrl-C and races**: every call completes before an interrupt takes effect,
      and writes two processes make at once do not fail on the race (``client``).
    - **A damaged store is one sentence**: an embedded store's file is checked when opened, and
      SQLite's "malformed" / "disk is full" anywhere later name the file and the way out (``damage``).
    """

    def __init__(self, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = resolve_tracking_uri(uri)
        db = sqlite_file(self.uri)
        if db is not None:
            from filelock import FileLock

            db.parent.mkdir(parents=True, exist_ok=True)
            check_on_open(db)  # a damaged file: one sentence now, not a traceback from MLflow later
            # MLflow creates and migrates the tables when the client opens the store; two processes
            # doing it at once on a new store collide ("duplicate column"), so that is serialized
            with FileLock(str(db) + ".init.lock", timeout=300), sqlite_faults(db):
                client = MlflowClient(tracking_uri=self.uri)
                client.search_experiments(max_results=1)
            client = FaultSayingClient(client, db)
        else:
            if self.uri.startswith(("http://", "https://")):
                from tlbench.tracking.retries import announce_retries

                announce_retries()  # a server restart: "retrying" on the console, not silence
            client = MlflowClient(tracking_uri=self.uri)
        # Ctrl-C / SIGTERM never land inside a store write (they would leave SQLite locked)
        self.client = UninterruptedClient(RaceSafeClient(client))
        self._writer: ThreadPoolExecutor | None = None

    def writer(self) -> ThreadPoolExecutor:
        """One background thread that writes finished cells' artifacts, in order."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tlbench-artifacts")
            process.WRITERS.append(self._writer)
        return self._writer

    def experiment_id(self, grid: str) -> str:
        """The grid's experiment, created on first use (safe if two processes race to create it),
        after the internal claims' one (so that one sorts last), tagged for MLflow's training UI."""
        claims_experiment(self)
        return self.experiment(grid, {tags.GRID: grid, **experiment_view_tags()})

    def experiment(self, name: str, experiment_tags: dict[str, str]) -> str:
        """An experiment's id, created (or restored from the bin) on first use."""
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        try:
            return self.client.create_experiment(
                name, artifact_location=_local_artifact_root(self.uri), tags=experiment_tags
            )
        except MlflowException:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    # exactly once (tlbench.tracking.claims holds the protocol) ----------------------------------
    def claim(
        self,
        experiment_id: str,
        cell: Cell,
        variant: str | None = None,
        *,
        force: bool = False,
        session: str = "",
    ) -> Claim | None:
        return claim(self, experiment_id, cell, variant, force=force, session=session)

    def is_claimed(self, experiment_id: str, cell_id: str, variant: str | None = None) -> bool:
        return is_claimed(self, experiment_id, cell_id, variant)

    # finding runs again ------------------------------------------------------------------------
    def runs(self, experiment_id: str, status: str | None = None) -> list[Any]:
        """Every tlbench cell run of an experiment (optionally of one status), newest first."""
        filt = f"tags.`{tags.CELL_ID}` != ''"
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
            if run.data.tags.get(tags.VARIANT) == variant:
                done.setdefault(run.data.tags[tags.CELL_ID], run)
        return done

    def finished_run(self, experiment_id: str, cell_id: str, variant: str | None = None) -> Any | None:
        """The cell's newest FINISHED run of that variant, or None: one filtered query, so
        checking a cell costs the same in a store of ten runs or of ten thousand."""
        return self.newest_run(experiment_id, cell_id, variant, status="FINISHED")

    def resumable_run(self, experiment_id: str, cell: Cell, variant: str | None = None) -> Any | None:
        """The cell's newest run if it was KILLED (interrupted, reaped, its worker died), is
        RUNNING without a heartbeat, is SCHEDULED (paused or dropped by a race: the executor
        decides whether to continue it), or FAILED on a full disk: the next attempt continues it
        from its checkpoint."""
        run = self.newest_run(experiment_id, cell.id, variant)
        if run is None:
            return None
        if run.info.status == "RUNNING" and is_dead(
            run.data.tags, last_beat(run)
        ):  # the caller holds the claim
            self.end_run(run.info.run_id, "KILLED", "stale: its process is gone")
            return self.client.get_run(run.info.run_id)
        if run.info.status == "FAILED" and run.data.tags.get(tags.REASON, "").startswith(
            tags.DISK_FULL_REASON
        ):
            return run  # failed for want of space, its checkpoint kept: continued once space is freed
        return run if run.info.status in ("KILLED", "SCHEDULED") else None

    def reap_stale(self, experiment_id: str, stale_after_s: float | None = None) -> list[str]:
        """RUNNING cell runs whose process is gone, marked KILLED (``tracking.reaping``)."""
        from tlbench.tracking.reaping import reap_stale

        return reap_stale(self, experiment_id, stale_after_s)

    def newest_run(
        self, experiment_id: str, cell_id: str, variant: str | None = None, status: str | None = None
    ) -> Any | None:
        """The cell's newest run of that variant, of any state or of ``status`` (a study's trial
        runs carry the cell's id too: enough are read that they cannot hide the plain run)."""
        state = f" and attributes.status = '{status}'" if status else ""
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{tags.CELL_ID}` = '{cell_id}'{state}",
            order_by=["start_time DESC"],
            max_results=1000,
        )
        return next((r for r in runs if r.data.tags.get(tags.VARIANT) == variant), None)

    def get_run(self, run_id: str) -> Any:
        return self.client.get_run(run_id)

    def metric_history(self, run_id: str, key: str) -> list[Any]:
        """A run's values of one metric, by step."""
        return sorted(self.client.get_metric_history(run_id, key), key=lambda m: m.step)

    def experiment_ids(self) -> list[str]:
        return [e.experiment_id for e in self.client.search_experiments()]

    def grid_experiments(self) -> list[Any]:
        """The experiments of tlbench grids in this store."""
        return list(self.client.search_experiments(filter_string=f"tags.`{tags.GRID}` != ''"))

    # writing to runs ---------------------------------------------------------------------------
    def set_tags(self, run_id: str, values: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in values.items()])

    def end_run(self, run_id: str, status: str, reason: str = "") -> None:
        """End a run (KILLED, FAILED, ...) with its reason as a tag: never left RUNNING."""
        try:
            if reason:
                self.client.set_tag(run_id, tags.REASON, reason[:5000])
        finally:
            self.client.set_terminated(run_id, status)

    def reopen(self, run_id: str) -> bool:
        """A run RUNNING again (a study's parent taken over by this process); False if deleted."""
        if self.client.get_run(run_id).info.lifecycle_stage != "active":
            return False
        self.client.update_run(run_id, status="RUNNING")
        return True

    def drop_claim(self, claim_run_id: str) -> None:
        """Free a claim whose holder died (its worker process is gone): delete the claim run."""
        with contextlib.suppress(Exception):
            self.client.delete_run(claim_run_id)

    def log_artifacts(self, run_id: str, folder: Path | str, path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(folder), path)

    def ensure_view(self, experiment_id: str, cells: list[Any]) -> None:
        """The grid's saved runs view in MLflow's UI (``tracking.view``)."""
        from tlbench.tracking.view import ensure_view

        ensure_view(self.client, experiment_id, cells)

    def attach_report(self, experiment_id: str, grid: str, files: list[Path]) -> str:
        """The report's files on the grid's parent run (created once, reused), under ``report/``."""
        existing = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{tags.GRID_REPORT}` = 'true'", max_results=1
        )
        if existing:
            run_id = existing[0].info.run_id
        else:
            run = self.client.create_run(
                experiment_id, run_name=f"grid:{grid}", tags={tags.GRID_REPORT: "true", tags.GRID: grid}
            )
            run_id = run.info.run_id
            self.client.set_terminated(run_id, "FINISHED")
        for f in files:
            self.client.log_artifact(run_id, str(f), "report")
        return run_id

    # cell runs ---------------------------------------------------------------------------------
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
        run_tags = _cell_tags(cell, grid_file, variant, parent_run_id)
        run_tags.update(tags or {})
        run_name = run_name or short_run_name(cell, variant)
        run = self.client.create_run(experiment_id, run_name=run_name, tags=run_tags)
        cell_run = CellRun(self, run.info.run_id, cell)
        cell_run.log_params({**cell.flat_params(), **(params or {})})
        return cell_run

    def reopen_cell(self, run: Any, cell: Cell) -> CellRun:
        """Continue a KILLED or SCHEDULED run: RUNNING again, its failure reason and race state
        cleared (the rung it reached stays), resumes counted."""
        from mlflow.exceptions import MlflowException

        run_id = run.info.run_id
        self.client.update_run(run_id, status="RUNNING")
        for key in (tags.REASON, tags.RACE, tags.RACE_RULE, tags.RACE_LEADER, tags.RACE_REASON):
            if key not in run.data.tags:
                continue
            with contextlib.suppress(MlflowException):
                self.client.delete_tag(run_id, key)
        self.client.set_tag(run_id, tags.RESUMES, str(int(run.data.tags.get(tags.RESUMES, "0")) + 1))
        cell_run = CellRun(self, run_id, cell, resumed=True)  # its first heartbeat names this owner
        cell_run.known_params = dict(run.data.params)
        return cell_run

    # checkpoints of finished runs --------------------------------------------------------------
    def run_checkpoint(self, run_id: str, dst_dir: Path) -> Path:
        """The best checkpoint of any earlier FINISHED tlbench run (``weights: run:ID``), checked first."""
        from mlflow.exceptions import MlflowException

        from tlbench.models.weights import WeightsError

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
        """The best checkpoint of a finished run, as a local file (downloaded if the store is remote).

        A FINISHED run's checkpoint never changes: it is fetched once per process and kept for the
        process's life (a pool worker runs every transfer cell of a source on one download);
        ``dst_dir`` is used when the cache cannot be.
        """
        cached = process.CHECKPOINTS.get((self.uri, run_id))
        if cached is not None and cached.exists():
            return cached
        folder = process.checkpoint_cache() / run_id
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            folder = dst_dir
            folder.mkdir(parents=True, exist_ok=True)
        path = Path(self.client.download_artifacts(run_id, CHECKPOINT_ARTIFACT, str(folder)))
        process.CHECKPOINTS[(self.uri, run_id)] = path
        return path


def _cell_tags(
    cell: Cell, grid_file: str | None, variant: str | None, parent_run_id: str | None
) -> dict[str, str]:
    out = {
        tags.CELL_ID: cell.id,
        tags.GRID: cell.grid,
        tags.CELL: cell.name,
        tags.CONFIG_ID: cell.config_id or cell.id,
        tags.VERSION: __version__,
        **owner_tags(),
    }
    optional = {
        tags.GIT_COMMIT: _git_commit(),
        tags.GRID_FILE: grid_file,
        tags.VARIANT: variant,
        tags.PARENT_RUN_ID: parent_run_id,
    }
    out.update({k: v for k, v in optional.items() if v})
    return out
