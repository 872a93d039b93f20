"""The tracking server away longer than the client's retries, or longer than a heartbeat's
staleness, or only its PostgreSQL: real `tlbench server`, real `tlbench run` processes.

Each test has its own server (it stops it), on SQLite unless it is about PostgreSQL.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import ServerProcess, free_port
from mlflow.tracking import MlflowClient

CLI = [sys.executable, "-m", "tlbench.cli"]
GRID = """
name: outage
train: {epochs: 40, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
datasets:
  - {name: synthetic, params: {classes: 3, train_per_class: 20, val_per_class: 5, test_per_class: 5, image_size: 16}}
backbones: [{name: test_resnet, weights: none}]
strategies: [scratch]
optimizers: [sgd]
augmentations: [none]
"""
REASON = re.compile(r"the tracking server was unreachable for \d+ s: retries ran out at \S+")


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    drop = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {
        **env,
        "TLBENCH_CHECKPOINTS": str(tmp / "ckpt"),
        "TLBENCH_CLAIM_GRACE_S": "0",
        "TLBENCH_CHECKPOINT_S": "0",
        **extra,
    }


def start_server(root: Path, store: str) -> ServerProcess:
    """`tlbench server` on 127.0.0.1 (no auth: loopback), one worker; ``.url`` set."""
    port = free_port()
    args = [*CLI, "server", "--port", str(port), "--workers", "1", "--backend-store-uri", store]
    args += ["--artifacts-destination", str(root / "artifacts")]
    proc = ServerProcess(args, _env(root), root / "server.log").start()
    proc.url = f"http://127.0.0.1:{port}"
    proc.wait_http(f"{proc.url}/health")
    return proc


def tlbench_run(grid: Path, url: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*CLI, "run", "--grid", str(grid), "--tracking-uri", url],
            env=env,
            cwd=grid.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def running_cell_run(client: MlflowClient, proc: subprocess.Popen[bytes], log: Path, epochs: int = 1):
    """The grid's RUNNING cell run once it has logged ``epochs`` epochs."""
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        exp = client.get_experiment_by_name("outage")
        runs = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") if exp else []
        run = next((r for r in runs if "tlbench.cell_id" in r.data.tags), None)
        if run is not None and len(client.get_metric_history(run.info.run_id, "val_acc")) >= epochs:
            return run
        time.sleep(0.3)
    raise AssertionError(log.read_text())


def wait_for(text: str, log: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while text not in log.read_text():
        assert proc.poll() is None and time.time() < deadline, log.read_text()
        time.sleep(0.3)


@pytest.mark.slow
def test_retries_that_ran_out_end_the_run_killed_with_why_once_the_server_is_back(tmp_path, write_grid):
    """Before: the run stayed RUNNING until another process reaped it as stale, and the command
    died on the error (its reason nowhere in the store). Now: KILLED with the outage's reason as
    soon as the server answers, and the next run continues the cell from its checkpoint."""
    server = start_server(tmp_path, f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    grid = write_grid(GRID)
    short = _env(tmp_path, MLFLOW_HTTP_REQUEST_MAX_RETRIES="2", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1")
    log = tmp_path / "run.log"
    try:
        run = tlbench_run(grid, server.url, short, log)
        client = MlflowClient(server.url)
        first = running_cell_run(client, run, log)
        server.stop()
        wait_for("marked KILLED once the server answers", log, run)  # its retries ran out
        assert run.poll() is None  # still trying to end the run
        server.start().wait_http(f"{server.url}/health")
        run.wait(timeout=180)
        assert "Traceback" not in log.read_text(), log.read_text()
        ended = client.get_run(first.info.run_id)
        assert ended.info.status == "KILLED", log.read_text()
        assert REASON.fullmatch(ended.data.tags["tlbench.failure_reason"]), ended.data.tags
        assert not list((tmp_path / "ckpt" / ".pending-ends").glob("*.json"))  # delivered

        again = tlbench_run(grid, server.url, _env(tmp_path), tmp_path / "again.log")
        assert again.wait(timeout=300) == 0, (tmp_path / "again.log").read_text()
        done = client.get_run(first.info.run_id)
        assert done.info.status == "FINISHED" and done.data.tags["tlbench.resumes"] == "1"
        steps = sorted({m.step for m in client.get_metric_history(done.info.run_id, "val_acc")})
        assert steps == list(range(40))
    finally:
        server.stop()


@pytest.mark.slow
def test_an_outage_longer_than_the_staleness_gets_no_live_cell_reaped(tmp_path, write_grid):
    """Heartbeats every 1 s (stale after 8 s), the server away 15 s; a second `tlbench run`
    started during the outage looks as soon as the server is back. Before: it found the live
    cell's heartbeat 15 s old, marked its run KILLED and took the cell over (two processes
    training one cell). Now it waits one beat's chance, sees the cell beat, and leaves it."""
    server = start_server(tmp_path, f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    grid = write_grid(GRID)
    env = _env(tmp_path, TLBENCH_HEARTBEAT_S="1")
    try:
        live = tlbench_run(grid, server.url, env, tmp_path / "live.log")
        client = MlflowClient(server.url)
        first = running_cell_run(client, live, tmp_path / "live.log")
        server.stop()
        time.sleep(10)
        looker = tlbench_run(grid, server.url, env, tmp_path / "looker.log")  # retries meanwhile
        time.sleep(5)
        server.start().wait_http(f"{server.url}/health")
        assert looker.wait(timeout=240) == 0, (tmp_path / "looker.log").read_text()
        assert live.wait(timeout=300) == 0, (tmp_path / "live.log").read_text()
        done = client.get_run(first.info.run_id)
        steps = sorted({m.step for m in client.get_metric_history(done.info.run_id, "val_acc")})
    finally:
        server.stop()
    looked = (tmp_path / "looker.log").read_text()
    assert "KILLED" not in looked and ("running elsewhere" in looked or "finished" in looked), looked
    assert done.info.status == "FINISHED" and "tlbench.resumes" not in done.data.tags
    assert steps == list(range(40))


def _status(url: str) -> int:
    """The HTTP status of one GET, without retries."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture
def private_postgres(tmp_path):
    """A PostgreSQL cluster of this test alone (it is stopped mid-test), made as conftest's
    ``postgres_server`` makes the session's; yields its URL and a ``pg_ctl`` caller."""
    import shutil

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    pg = found[-1].parent
    root = Path(tempfile.mkdtemp(prefix="tlbench-pg-outage-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    subprocess.run(
        [*as_user, str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"

    def pg_ctl(*args: str) -> None:
        cmd = [*as_user, str(pg / "pg_ctl"), "-D", str(data), "-o", opts, "-l", f"{root}/log", *args]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    pg_ctl("-w", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", pg_ctl
    finally:
        subprocess.run(
            [*as_user, str(pg / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_a_postgresql_outage_of_20_s_mid_cell_loses_nothing(tmp_path, write_grid, private_postgres):
    """The server stays up, its database goes: MLflow answers 500 meanwhile, which its client
    retries like a refused connection; every epoch arrives and the run is FINISHED."""
    url, pg_ctl = private_postgres
    server = start_server(tmp_path, url)
    grid = write_grid(GRID)
    log = tmp_path / "run.log"
    try:
        run = tlbench_run(grid, server.url, _env(tmp_path), log)
        client = MlflowClient(server.url)
        first = running_cell_run(client, run, log)
        pg_ctl("-m", "fast", "-w", "stop")
        time.sleep(3)
        assert _status(f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1") >= 500
        time.sleep(17)
        assert run.poll() is None, log.read_text()  # it waited for the database, it did not fail
        pg_ctl("-w", "start")
        assert run.wait(timeout=300) == 0, log.read_text()
        done = client.get_run(first.info.run_id)
        steps = sorted({m.step for m in client.get_metric_history(done.info.run_id, "val_acc")})
    finally:
        server.stop()
    assert done.info.status == "FINISHED" and "tlbench.resumes" not in done.data.tags, log.read_text()
    assert steps == list(range(40))
