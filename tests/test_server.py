"""`tlbench server` with MLflow's auth app: a real server on 127.0.0.1, real workers, a restart.

One server for the module (starting one costs seconds); the restart test stops and starts it
again, so it runs last.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode

import pytest
from click.testing import CliRunner
from helpers import ServerProcess, free_port, process_cmdlines
from mlflow.tracking import MlflowClient

from tlbench.cli import main

ADMIN_PASSWORD = "adm1n-Secret-" + os.urandom(6).hex()
WORKER_PASSWORD = "w0rker-Secret-" + os.urandom(6).hex()
CLI = [sys.executable, "-m", "tlbench.cli"]
GRID = """
name: authgrid
train: {epochs: 1, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
datasets:
  - {name: synthetic, params: {classes: 3, train_per_class: 20, val_per_class: 5, test_per_class: 5, image_size: 16}}
backbones: [{name: test_resnet, weights: none}]
strategies: [scratch]
optimizers: [sgd]
augmentations: [none]
"""
LONG_GRID = GRID.replace("name: authgrid", "name: restart").replace("epochs: 1", "epochs: 5")


def _clean_env() -> dict[str, str]:
    drop = (
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_URI",
        "TLBENCH_MLFLOW_ADMIN_PASSWORD",
    )
    return {k: v for k, v in os.environ.items() if k not in drop}


def _as(user: str, password: str, **extra: str) -> dict[str, str]:
    return {**_clean_env(), "MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password, **extra}


def _get(url: str, user: str | None = None, password: str = "") -> int:
    req = urllib.request.Request(url)
    if user is not None:
        req.add_header("Authorization", "Basic " + b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`tlbench server --auth` on SQLite, the admin password from a file (…_FILE)."""
    root = tmp_path_factory.mktemp("authserver")
    secret = root / "admin-password"
    secret.write_text(ADMIN_PASSWORD + "\n")
    port = free_port()
    args = [*CLI, "server", "--auth", "--port", str(port), "--workers", "1"]
    args += ["--backend-store-uri", f"sqlite:///{root / 'store' / 'mlflow.db'}"]
    args += ["--artifacts-destination", str(root / "artifacts")]
    env = {**_clean_env(), "TLBENCH_MLFLOW_ADMIN_PASSWORD_FILE": str(secret)}
    proc = ServerProcess(args, env, root / "server.log").start()
    url = f"http://127.0.0.1:{port}"
    proc.wait_http(f"{url}/health")
    proc.url, proc.root = url, root
    yield proc
    proc.stop()


def test_the_rest_api_needs_credentials_and_the_old_default_admin_password_is_refused(server):
    api = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _get(api) == 401
    assert _get(api, "admin", "password1234") == 401
    assert _get(api, "admin", ADMIN_PASSWORD + "x") == 401
    assert _get(api, "admin", ADMIN_PASSWORD) == 200
    assert (server.root / "store" / "mlflow-auth.db").exists()  # beside the store, not in the cwd
    assert not any(ADMIN_PASSWORD in line for line in process_cmdlines())
    assert ADMIN_PASSWORD not in server.output()


@pytest.mark.slow
def test_a_granted_worker_runs_a_grid_and_another_user_cannot_read_it(server, tmp_path, write_grid):
    from mlflow.server import get_app_client

    grid = write_grid(GRID)
    admin = _as("admin", ADMIN_PASSWORD, TLBENCH_MLFLOW_USER_PASSWORD=WORKER_PASSWORD)
    granted = subprocess.run(
        [*CLI, "grant", "worker", "--create", "--grid", str(grid), "--tracking-uri", server.url],
        env=admin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert granted.returncode == 0, granted.stderr
    assert "EDIT on experiment 'authgrid'" in granted.stderr and WORKER_PASSWORD not in granted.stderr
    assert "MANAGE on experiment 'zz-tlbench-internal-claims'" in granted.stderr

    worker = _as("worker", WORKER_PASSWORD, TLBENCH_CHECKPOINTS=str(tmp_path / "ckpt"))
    run = subprocess.run(
        [*CLI, "run", "--grid", str(grid), "--tracking-uri", server.url],
        env=worker,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for secret in (ADMIN_PASSWORD, WORKER_PASSWORD):
        assert secret not in run.stdout + run.stderr + server.output()

    os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD)
    try:
        client = MlflowClient(server.url)
        exp = client.get_experiment_by_name("authgrid")
        runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'")
        assert [r.data.tags["tlbench.cell_id"] for r in runs if "tlbench.cell_id" in r.data.tags]
        # released claims do not pile up: the worker (MANAGE on the claims) deleted its own;
        # before #29 it had EDIT there, MLflow refused the delete and one FINISHED claim per cell stayed
        claims = client.get_experiment_by_name("zz-tlbench-internal-claims")
        assert client.search_runs([claims.experiment_id]) == []
        get_app_client("basic-auth", tracking_uri=server.url).create_user("mallory", "mall0ry-Secret-42")
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME"), os.environ.pop("MLFLOW_TRACKING_PASSWORD")
    status = _get(
        f"{server.url}/api/2.0/mlflow/experiments/get?experiment_id={exp.experiment_id}",
        "mallory",
        "mall0ry-Secret-42",
    )
    assert status == 403  # default_permission NO_PERMISSIONS: not granted, not readable
    denied = CliRunner().invoke(
        main,
        ["run", "--grid", str(grid), "--tracking-uri", server.url],
        env={"MLFLOW_TRACKING_USERNAME": "mallory", "MLFLOW_TRACKING_PASSWORD": "mall0ry-Secret-42"},
    )
    assert denied.exit_code == 2 and "mallory" in denied.output and "tlbench grant" in denied.output
    assert "Traceback" not in denied.output


def test_missing_or_wrong_credentials_are_one_message_and_no_local_fallback(
    server, tmp_path, write_grid, monkeypatch
):
    grid = write_grid(GRID)
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    cases = {
        "MLFLOW_TRACKING_USERNAME": {},
        "MLFLOW_TRACKING_PASSWORD": {
            "MLFLOW_TRACKING_USERNAME": "worker",
            "MLFLOW_TRACKING_PASSWORD": "wrong-password-1",
        },
    }
    for variable, env in cases.items():
        out = CliRunner().invoke(main, ["run", "--grid", str(grid), "--tracking-uri", server.url], env=env)
        assert out.exit_code == 2, out.output
        assert variable in out.output and "Traceback" not in out.output
        assert not (tmp_path / "mlruns").exists()  # no silent fallback to a local store


def test_a_server_that_stays_away_is_one_message(tmp_path, write_grid, monkeypatch):
    grid = write_grid(GRID)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    url = f"http://127.0.0.1:{free_port()}"
    out = CliRunner().invoke(main, ["run", "--grid", str(grid), "--tracking-uri", url])
    assert out.exit_code == 1 and "stayed unreachable through every retry" in out.output, out.output
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_a_server_stopped_for_20_s_mid_cell_loses_no_epoch(server, tmp_path, write_grid):
    """The client's retries carry the cell through the outage; every epoch's metrics arrive."""
    grid = write_grid(LONG_GRID)
    env = _as("admin", ADMIN_PASSWORD, TLBENCH_CHECKPOINTS=str(tmp_path / "ckpt"))
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        run = subprocess.Popen(
            [*CLI, "run", "--grid", str(grid), "--tracking-uri", server.url],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD)
    try:
        client = MlflowClient(server.url)
        deadline, first = time.time() + 240, None
        while first is None and time.time() < deadline and run.poll() is None:  # the cell's run exists
            exp = client.get_experiment_by_name("restart")
            runs = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") if exp else []
            first = next((r for r in runs if "tlbench.cell_id" in r.data.tags), None)
            time.sleep(0.2)
        assert first is not None, log.read_text()
        server.stop()
        time.sleep(20)
        assert run.poll() is None, log.read_text()  # the cell waited for the server, it did not fail
        server.start().wait_http(f"{server.url}/health")
        assert run.wait(timeout=400) == 0, log.read_text()
        done = client.get_run(first.info.run_id)
        history = client.get_metric_history(done.info.run_id, "val_acc")
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME"), os.environ.pop("MLFLOW_TRACKING_PASSWORD")
    assert done.info.status == "FINISHED"
    assert sorted(m.step for m in history) == list(range(5))
    assert "retrying" in log.read_text().lower()  # the outage was said on the console
