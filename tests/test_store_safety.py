"""The embedded store kept safe: a damaged file is one sentence (exit 2) in every command that
opens it, a backup taken while a grid runs holds every run FINISHED when it began, a restore puts
back a store ``tlbench report`` reads, and ``tlbench store check`` finds stale runs and orphaned
checkpoints. Stores are real SQLite files filled through MLflow's client (one test runs a grid)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from tlbench.cells import expand
from tlbench.cli import main
from tlbench.spec import load_grid
from tlbench.tracking import Tracker, tags
from tlbench.tracking.damage import StoreDamagedError, sqlite_faults
from tlbench.tracking.heartbeat import host_identity, owner_tags, process_start

MALFORMED = "database disk image is malformed"

TINY_GRID = """
name: tiny
train: {epochs: 2, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
datasets:
  - {name: synthetic, params: {classes: 4, train_per_class: 30, val_per_class: 8, test_per_class: 8, image_size: 16}}
backbones:
  - {name: test_resnet, weights: none}
strategies: [scratch]
optimizers: [sgd]
augmentations: [none]
"""  # tests/conftest.py's (a conftest module cannot be imported: tests/report has one too)


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """A real ``tlbench`` process (what a user sees: stderr, exit status)."""
    return subprocess.run(
        [sys.executable, "-m", "tlbench.cli", *args], capture_output=True, text=True, timeout=180
    )


def _fill(store: str, grid: Path, *, epochs: int = 60) -> dict[str, str]:
    """A FINISHED run per cell of ``grid`` with final metrics and per-epoch curves (enough rows
    that the file has data pages to lose); cell name -> run id."""
    spec = load_grid(grid)
    exp = Tracker(store).experiment_id(spec.name)
    client = MlflowClient(store)
    out = {}
    for i, cell in enumerate(expand(spec, str(grid))):
        run = client.create_run(
            exp,
            run_name=cell.name,
            tags={
                tags.CELL_ID: cell.id,
                tags.CELL: cell.name,
                tags.CONFIG_ID: cell.config_id or cell.id,
                tags.GRID: cell.grid,
            },
        )
        final = {"test_acc": 0.5 + i / 100, "best_val_acc": 0.55, "best_epoch": 1.0, "train_time_s": 3.0}
        final |= {"params_total": 1000.0, "params_trainable": 1000.0}
        metrics = [Metric(k, v, 0, 0) for k, v in final.items()]
        metrics += [
            Metric(k, 0.5 + e / 1000, 0, e) for e in range(epochs) for k in ("val_acc", "train_loss", "lr")
        ]
        params = [Param(k, str(v)) for k, v in cell.flat_params().items()]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id, "FINISHED")
        out[cell.name] = run.info.run_id
    return out


@pytest.fixture(scope="module")
def _template(tmp_path_factory) -> tuple[Path, Path]:
    """One filled store per module (a new MLflow store runs every migration: seconds)."""
    tmp = tmp_path_factory.mktemp("template")
    grid = tmp / "tiny.yaml"
    grid.write_text(TINY_GRID.replace("seed: 0}", "seed: 0}\nseeds: 3"))
    _fill(f"sqlite:///{tmp / 'mlflow.db'}", grid)
    return tmp / "mlflow.db", grid


@pytest.fixture
def filled(store, _template) -> tuple[str, Path, Path]:
    """A copy of the filled store (the tiny grid's runs, 3 seeds): its URI, its file, the grid."""
    db = Path(store.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True)
    shutil.copyfile(_template[0], db)
    return store, db, _template[1]


def _truncate(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def _said_damaged(text: str, db: Path) -> None:
    assert "Traceback" not in text, text
    assert str(db) in text and MALFORMED in text, text
    assert "tlbench store restore BACKUP" in text and '".recover"' in text, text


def test_a_truncated_store_is_one_sentence_for_report_and_run(filled):
    store, db, grid = filled
    _truncate(db)
    proc = _cli("report", "--grid", str(grid), "--tracking-uri", store)  # a real process: its stderr
    assert proc.returncode == 2, proc.stderr
    _said_damaged(proc.stderr, db)
    run = _invoke("run", "--grid", str(grid), "--tracking-uri", store)  # a traceback would raise here
    assert run.exit_code == 2, run.output
    _said_damaged(run.output, db)


@pytest.mark.parametrize(
    "args",
    [
        ["ls", "--grid", "{grid}"],
        ["rank", "--grid", "{grid}"],
        ["tune", "--grid", "{grid}", "--trials", "1", "--storage", "{tmp}/optuna.journal"],
        ["ui", "--port", "1"],
    ],
    ids=["ls", "rank", "tune", "ui"],
)
def test_every_command_that_opens_a_damaged_store_says_so(filled, tmp_path, args):
    store, db, grid = filled
    _truncate(db)
    out = _invoke(*(a.format(grid=grid, tmp=tmp_path) for a in args), "--tracking-uri", store)
    assert out.exit_code == 2, out.output
    _said_damaged(out.output, db)


def test_damage_deep_in_the_file_is_found_on_open(filled):
    store, db, _ = filled
    with db.open("r+b") as f:  # pages in the middle overwritten: the schema still reads
        f.seek(db.stat().st_size // 2)
        f.write(b"\xff" * 3 * 4096)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
    with pytest.raises(StoreDamagedError, match=r"is damaged \(SQLite: .*(malformed|Page \d+)"):
        Tracker(store)


def test_damage_met_after_the_store_opened_is_the_same_sentence(filled):
    store, db, _ = filled
    tracker = Tracker(store)  # sound when opened
    exp = tracker.experiment_id("tiny")
    _truncate(db)
    with pytest.raises(StoreDamagedError) as err:
        tracker.runs(exp)
    _said_damaged(str(err.value), db)


def test_a_raw_sqlite_error_reaching_a_command_is_the_same_sentence(filled):
    from tlbench.cli.common import _store_fault

    store, db, _ = filled

    def met() -> Exception:  # as from a path to the store that is not the tracker's (a pool worker's)
        try:
            raise RuntimeError("cell failed") from sqlite3.DatabaseError(MALFORMED)
        except RuntimeError as err:
            return err

    assert _store_fault(met(), store) is None  # the store is sound: the damaged file is another one
    _truncate(db)
    _said_damaged(_store_fault(met(), store) or "", db)
    assert _store_fault(ValueError("some other error"), store) is None


def test_a_full_disk_under_the_store_names_the_file_and_the_free_bytes(tmp_path):
    db = tmp_path / "mlflow.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (v BLOB)")
    conn.execute("PRAGMA max_page_count = 3")  # SQLite's own SQLITE_FULL, as on a full disk
    with pytest.raises(OSError) as err, sqlite_faults(db):
        conn.executemany("INSERT INTO t VALUES (?)", [(b"x" * 4000,)] * 10)
    conn.close()
    text = str(err.value)
    assert str(db) in text and "database or disk is full" in text and "bytes) is free" in text, text


def test_a_server_store_is_told_to_use_its_own_backup_tools():
    out = _invoke("store", "backup", "--tracking-uri", "postgresql://u@db.example/mlflow")
    assert out.exit_code == 2
    assert "pg_dump" in out.output and "not an embedded SQLite store" in out.output


def _finished(client: MlflowClient) -> set[str]:
    exp = client.get_experiment_by_name("tiny")
    if exp is None:
        return set()
    runs = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'")
    return {r.info.run_id for r in runs if r.data.tags.get(tags.CELL_ID)}


def _has_grid(db: Path) -> bool:
    """The run has made its store and the grid's experiment (read with sqlite3, not MLflow's
    client: that would migrate a store the run is still creating)."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return conn.execute("SELECT 1 FROM experiments WHERE name = 'tiny'").fetchone() is not None
    except sqlite3.Error:
        return False


@pytest.mark.slow
def test_a_backup_taken_while_a_grid_runs_holds_every_finished_run(write_grid, store, tmp_path):
    from tlbench import api

    grid = write_grid(TINY_GRID.replace("epochs: 2", "epochs: 1").replace("seed: 0}", "seed: 0}\nseeds: 3"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlbench.cli", "run", "--grid", str(grid), "--tracking-uri", store],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "TLBENCH_CHECKPOINTS": str(tmp_path / "ckpt")},
    )
    live = MlflowClient(store)
    taken: list[tuple[set[str], Path, bool]] = []
    try:
        while proc.poll() is None and len(taken) < 40:
            if _has_grid(Path(store.removeprefix("sqlite:///"))):
                before = _finished(live)
                copy = api.backup_store(to=tmp_path / f"b{len(taken)}", artifacts=True, tracking_uri=store)
                taken.append((before, copy.folder, proc.poll() is None))
            time.sleep(0.3)
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()
    during = [t for t in taken if t[2]]
    assert during, "no backup was taken while the grid ran"
    assert any(0 < len(before) < 3 for before, _, _ in during), [len(b) for b, _, _ in during]
    for before, folder, _ in taken:
        with sqlite3.connect(folder / "mlflow.db") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        held = _finished(MlflowClient(f"sqlite:///{folder / 'mlflow.db'}"))
        assert before <= held, f"{folder} lost FINISHED runs {before - held}"
        for run_id in held:  # their best checkpoints came along (cell: sources need them)
            assert list((folder / "artifacts").glob(f"**/{run_id}/artifacts/checkpoint/*")), run_id


def test_restore_puts_back_a_store_that_report_reads(filled, tmp_path):
    store, db, grid = filled
    backup = _invoke("store", "backup", "--to", str(tmp_path / "copy"), "--tracking-uri", store)
    assert backup.exit_code == 0, backup.output
    assert "backed up 3 runs (3 FINISHED)" in backup.output
    sound = _invoke("store", "restore", str(tmp_path / "copy"), "--tracking-uri", store)
    assert sound.exit_code == 2 and "--force" in sound.output  # a sound store is not replaced unasked
    _truncate(db)
    damaged_size = db.stat().st_size
    refused = _invoke("store", "backup", "--to", str(tmp_path / "bad"), "--tracking-uri", store)
    assert refused.exit_code == 2 and MALFORMED in refused.output  # a copy would keep the damage

    restored = _invoke("store", "restore", str(tmp_path / "copy"), "--tracking-uri", store)
    assert restored.exit_code == 0, restored.output
    aside = list(db.parent.glob("mlflow.db.damaged-*"))
    assert len(aside) == 1 and aside[0].stat().st_size == damaged_size  # nothing is lost
    rep = _invoke(
        "report", "--grid", str(grid), "--tracking-uri", store, "--out", str(tmp_path / "rep"), "--no-mlflow"
    )
    assert rep.exit_code == 0, rep.output
    assert "synthetic/test_resnet/scratch/sgd/none" in (tmp_path / "rep" / "cells.csv").read_text()
    assert len(_finished(MlflowClient(store))) == 3


def test_a_damaged_backup_is_not_restored(filled, tmp_path):
    store, db, _ = filled
    bad = tmp_path / "bad.db"
    bad.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    out = _invoke("store", "restore", str(bad), "--force", "--tracking-uri", store)
    assert out.exit_code == 2 and f"the backup {bad} is damaged too" in out.output
    assert not list(db.parent.glob("mlflow.db.*-2*"))  # the store was left alone


def _dead_owner() -> dict[str, str]:
    """Owner tags of a process of this host that has exited (its PID, start time and host id)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.time() + 10
        while process_start(child.pid) is None and time.time() < deadline:
            time.sleep(0.05)
        start = process_start(child.pid)
    finally:
        child.kill()
        child.wait()
    assert start is not None and host_identity()
    return {tags.HOST: "here", tags.HOST_ID: host_identity(), tags.PID: str(child.pid), tags.PID_START: start}


def test_check_finds_a_dead_owners_run_and_an_orphaned_checkpoint(filled, tmp_path, monkeypatch):
    from tlbench import api

    store, _, _ = filled
    monkeypatch.setenv("TLBENCH_CHECKPOINTS", str(tmp_path / "ckpt"))
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("tiny").experiment_id
    beat = {tags.HEARTBEAT: f"{time.time():.3f}"}  # a fresh heartbeat: only the owner rule can tell
    owner = _dead_owner()
    dead = client.create_run(exp, run_name="dead", tags={tags.CELL_ID: "c-dead", **owner, **beat})
    alive = client.create_run(exp, run_name="alive", tags={tags.CELL_ID: "c-alive", **owner_tags(), **beat})
    killed = client.create_run(exp, run_name="killed", tags={tags.CELL_ID: "c-killed"})
    client.set_terminated(killed.info.run_id, "KILLED")
    full = client.create_run(exp, run_name="full", tags={tags.CELL_ID: "c-full"})
    client.set_tag(full.info.run_id, tags.REASON, f"{tags.DISK_FULL_REASON}: No space left in ...")
    client.set_terminated(full.info.run_id, "FAILED")  # resumed once space is freed: its checkpoint is kept
    finished = next(iter(_finished(client)))
    gone = uuid.uuid4().hex
    for run_id in (finished, gone, alive.info.run_id, killed.info.run_id, full.info.run_id):
        (tmp_path / "ckpt" / run_id).mkdir(parents=True)
        (tmp_path / "ckpt" / run_id / "last.pt").write_bytes(b"state")

    health = api.check_store(tracking_uri=store)
    assert (health.healthy, health.runs_running, health.checkpoints) == (False, 2, 5)
    found = {
        (p.kind, p.subject.rsplit("(", 1)[-1].rstrip(")").rsplit("/", 1)[-1]): p for p in health.problems
    }
    assert set(found) == {  # a live owner's run and checkpoint, and a KILLED run's (continued next), are fine
        ("stale run", dead.info.run_id),
        ("orphaned checkpoint", gone),
        ("orphaned checkpoint", finished),
    }
    assert f"pid {owner[tags.PID]} on here) is gone" in found["stale run", dead.info.run_id].detail
    assert found["orphaned checkpoint", gone].detail == "no run with this id in this store"
    assert found["orphaned checkpoint", finished].detail.endswith("is FINISHED")
    out = _invoke("store", "check", "--tracking-uri", store)
    assert out.exit_code == 1, out.output
    assert "3 problems" in out.output and out.output.count("orphaned checkpoint") == 2, out.output

    client.set_terminated(dead.info.run_id, "KILLED")
    for run_id in (finished, gone):
        for f in (tmp_path / "ckpt" / run_id).iterdir():
            f.unlink()
        (tmp_path / "ckpt" / run_id).rmdir()
    healthy = _invoke("store", "check", "--tracking-uri", store)
    assert healthy.exit_code == 0 and "healthy" in healthy.output, healthy.output
    assert "1 RUNNING run and 3 checkpoint folders looked at" in healthy.output  # the live one


def test_check_names_a_damaged_file(filled):
    store, db, _ = filled
    _truncate(db)
    out = _invoke("store", "check", "--tracking-uri", store)
    assert out.exit_code == 1 and "damaged" in out.output and MALFORMED in out.output
