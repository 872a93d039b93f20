"""Multi-node: a real two-node Ray cluster, a real PostgreSQL-backed MLflow server (tlbench
server), a grid across both nodes, and the second node killed mid-grid."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import free_port
from mlflow.tracking import MlflowClient
from test_cli import TRANSFER_GRID

pytestmark = pytest.mark.slow

RAY = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "TLBENCH_HEARTBEAT_S": "1",  # a dead attempt's claim is stale after 8 s
        "TLBENCH_CHECKPOINTS": str(tmp_path / "ckpt"),  # one filesystem: both "nodes" see it
        "TLBENCH_CHECKPOINT_S": "0",  # every epoch: a cell seen mid-training is killed mid-training
    }


ADMIN_PASSWORD = "ray-admin-" + os.urandom(8).hex()


@pytest.fixture
def mlflow_server(postgres_url, tmp_path, services):
    """`tlbench server --auth` on a fresh PostgreSQL database, on loopback; yields its URL."""
    port = free_port()
    proc = services.start(
        [
            sys.executable,
            "-m",
            "tlbench.cli",
            "server",
            "--backend-store-uri",
            postgres_url,
            "--port",
            str(port),
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--workers",
            "1",
            "--auth",
        ],
        env={**os.environ, "TLBENCH_MLFLOW_ADMIN_PASSWORD": ADMIN_PASSWORD},
    )
    url = f"http://127.0.0.1:{port}"
    services.wait_http(f"{url}/health", proc)
    return url


@pytest.fixture
def ray_cluster(tmp_path):
    """A head node and a second node (its own process group, so the test can kill it)."""
    env = _env(tmp_path)
    port = free_port()
    common = ["--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats"]
    subprocess.run(
        [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    second = subprocess.Popen(
        [RAY, "start", f"--address=127.0.0.1:{port}", *common, "--block"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        out = subprocess.run([RAY, "status", f"--address={address}"], capture_output=True, text=True, env=env)
        if out.stdout.count("node_") >= 2:
            break
        time.sleep(1)
    else:
        pytest.fail("the second Ray node did not join")
    yield {"address": address, "second": second, "env": env}
    with_group = second.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(with_group, signal.SIGKILL)
    subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env, timeout=120)


def _node_of(pid: int) -> int | None:
    """The process group of a Ray worker's raylet (= which node it runs on)."""
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return os.getpgid(ppid)
    except (OSError, ValueError):
        return None


def test_grid_on_two_ray_nodes_with_a_postgres_mlflow_server_survives_losing_a_node(
    write_grid, tmp_path, ray_cluster, mlflow_server, monkeypatch
):
    """The nodes were started without MLflow credentials: the tasks get the driver's (a task
    argument, not a runtime_env) and authenticate with them."""
    creds = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD}
    assert not set(creds) & set(ray_cluster["env"])
    for name, value in creds.items():
        monkeypatch.setenv(name, value)  # this test's own client
    grid = write_grid(
        TRANSFER_GRID.replace("epochs: 2", "epochs: 60").replace(
            "strategies: [linear_probe, scratch]", "strategies: [linear_probe, scratch, finetune]"
        )
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tlbench.cli",
            "run",
            "--grid",
            str(grid),
            "--backend",
            "ray",
            "--address",
            ray_cluster["address"],
            "--tracking-uri",
            mlflow_server,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**ray_cluster["env"], **creds},
    )
    client = MlflowClient(mlflow_server)
    second = ray_cluster["second"].pid
    victim = None
    deadline = time.time() + 240
    while victim is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        exp = client.get_experiment_by_name("e2e")
        if exp is None:
            continue
        for r in client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'"):
            pid = int(r.data.tags.get("tlbench.pid", 0))
            if r.data.metrics.get("val_acc") is not None and _node_of(pid) == second:
                victim = (r, pid)
    assert victim is not None, "no cell ran on the second node"
    run, pid = victim
    os.killpg(second, signal.SIGKILL)  # the node goes: its raylet and agents...
    os.kill(pid, signal.SIGKILL)  # ...and the cell it was running
    try:
        out, _ = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail("the grid did not complete after losing a node:\n" + out.decode()[-6000:])
    out = out.decode()
    assert proc.returncode == 0, out
    runs = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    finished = [r.info.run_name for r in runs if r.info.status == "FINISHED"]
    assert sorted(finished) == sorted(set(finished)) and len(finished) == 4  # every cell, once
    assert "RUNNING" not in {r.info.status for r in runs}
    again = client.get_run(run.info.run_id)
    assert (
        again.info.status == "FINISHED" and again.data.tags["tlbench.resumes"] == "1"
    )  # continued, same run
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc"))
    assert steps == list(range(60))
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"cell.yaml", "history.csv", "checkpoint"} <= arts  # through the server's artifact proxy
