"""docker/: what can be checked without a Docker engine, and the compose topology run natively."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import click
import pytest
import yaml
from helpers import REPO, free_port, process_cmdlines
from mlflow.tracking import MlflowClient

from tlbench.cli import main

DOCKER = REPO / "docker"
VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())  # anchors and `<<:` merges resolved


def _env_example() -> dict[str, str]:
    out = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _substitute(text: str, env: dict[str, str]) -> str:
    return VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), text).replace("$$", "$")


def test_every_variable_is_defined_with_a_default_or_in_env_example():
    text = (DOCKER / "compose.yaml").read_text()
    env = _env_example()
    used = {(m.group(1), m.group(2)) for m in VAR.finditer(text)}
    assert used, "the stack is wired by variables"
    missing = sorted(name for name, default in used if default is None and name not in env)
    assert not missing, f"variables with no default and not in .env.example: {missing}"
    assert "POSTGRES_PASSWORD" in env  # a secret: in the template, never with a default in compose


def test_services_volumes_and_dependencies_are_defined(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "mlflow", "dashboard", "worker"}
    volumes = set(compose["volumes"])
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on undefined {dep}"
            if cond.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], (
                    f"{name} waits for {dep} to be healthy; it has no healthcheck"
                )
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name} mounts undefined volume {source}"
            else:
                assert (DOCKER / source).exists(), f"{name} mounts missing {source}"
    assert "healthcheck" in services["postgres"]
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["driver"] == "nvidia"


def test_host_ports_bind_loopback_by_default(compose):
    published = [p for svc in compose["services"].values() for p in svc.get("ports", [])]
    assert len(published) == 2  # the MLflow UI and optuna-dashboard
    for port in published:
        host = _substitute(str(port), {}).split(":")[0]  # defaults only: what a fresh .env gives
        assert host == "127.0.0.1", port


def test_container_commands_are_real_tlbench_commands(compose):
    """Each service's command parses with tlbench's own CLI, the one the tests run natively."""
    env = _env_example()
    for name in ("mlflow", "dashboard", "worker"):
        args = [_substitute(str(a), env) for a in compose["services"][name]["command"]]
        command = main.commands.get(args[0])
        assert command is not None, f"{name}: tlbench has no command {args[0]!r}"
        with click.Context(command) as ctx:
            command.parse_args(ctx, args[1:])  # unknown options or bad values raise here
    worker_env = compose["services"]["worker"]["environment"]
    assert worker_env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert worker_env["TLBENCH_OPTUNA_STORAGE"].startswith("postgresql://")


def test_dockerfile_runs_tlbench_as_a_non_root_user():
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["tlbench"\]', text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    volumes = re.search(r"^VOLUME (\[.*\])", text, re.M)
    assert volumes and {"/data", "/cache", "/checkpoints"} <= set(yaml.safe_load(volumes.group(1)))
    extras = re.search(r'pip install -e "\.\[([^\]]+)\]"', text).group(1).split(",")
    declared = (REPO / "pyproject.toml").read_text()
    for extra in extras:
        assert re.search(rf"^{extra} = \[", declared, re.M), f"extra {extra!r} is not in pyproject.toml"
    for path in re.findall(r"^COPY \S* ?(\S+) ", text, re.M):
        assert (REPO / path).exists(), path


def test_the_env_file_is_ignored_and_its_template_is_not():
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=REPO)
    assert ignored.returncode == 0
    assert subprocess.run(["git", "check-ignore", "-q", "docker/.env.example"], cwd=REPO).returncode == 1


# --- the topology, natively ------------------------------------------------------------------------

GRID = """
name: stack
train: {epochs: 3, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
datasets: [{name: digits, train: {subset: 0.2}}]
backbones: [{name: test_resnet, weights: none}]
strategies: [linear_probe, scratch, finetune]
optimizers: [sgd, adamw]
augmentations: [none]
"""


@pytest.mark.slow
def test_the_compose_topology_natively(make_postgres_db, tmp_path, write_grid, compose, services):
    """postgres + `tlbench server` + two `tlbench run` workers + `tlbench dashboard`, the
    commands of compose.yaml, on 127.0.0.1."""
    db_password = "dbpw-" + os.urandom(8).hex()  # the cluster trusts 127.0.0.1, so any password works
    mlflow_db, optuna_db = (
        make_postgres_db(suffix).replace("postgres@", f"postgres:{db_password}@")
        for suffix in ("_mlflow", "_optuna")
    )
    grid = write_grid(GRID)
    port, dash_port = free_port(), free_port()
    admin_password, worker_password = "admin-" + os.urandom(8).hex(), "worker-" + os.urandom(8).hex()
    env = {
        **os.environ,
        "TLBENCH_OPTUNA_STORAGE": optuna_db,
        "TLBENCH_CHECKPOINTS": str(tmp_path / "checkpoints"),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
        "MLFLOW_TRACKING_USERNAME": "worker",  # the workers' account, as in compose.yaml
        "MLFLOW_TRACKING_PASSWORD": worker_password,
    }
    cli = [sys.executable, "-m", "tlbench.cli"]

    def service(args: list[str]) -> subprocess.Popen[bytes]:
        """A long-running container command (logging to a file, stopped when the test ends)."""
        return services.start([*cli, *args], env=env)

    server_args = [_substitute(str(a), {}) for a in compose["services"]["mlflow"]["command"]]
    assert "--auth" in server_args and not any("://" in a for a in server_args)  # secrets: environment
    server_args[server_args.index("--artifacts-destination") + 1] = str(tmp_path / "artifacts")
    server_args[server_args.index("--host") + 1] = "127.0.0.1"
    server_args[server_args.index("--port") + 1] = str(port)
    server_env = {"TLBENCH_SERVER_STORE": mlflow_db, "TLBENCH_MLFLOW_ADMIN_PASSWORD": admin_password}
    assert set(server_env) <= set(compose["services"]["mlflow"]["environment"])
    server = services.start([*cli, *server_args], env={**os.environ, **server_env})
    dash_args = [str(a) for a in compose["services"]["dashboard"]["command"]]
    dash_args[dash_args.index("--host") + 1] = "127.0.0.1"
    dash_args[dash_args.index("--port") + 1] = str(dash_port)
    dashboard = service(dash_args)
    services.wait_http(f"http://127.0.0.1:{port}/health", server)
    admin = {**env, "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": admin_password}
    granted = subprocess.run(  # docker/README: the one-off `grant` that creates the workers' account
        [*cli, "grant", "worker", "--create", "--grid", str(grid)],
        env={**admin, "TLBENCH_MLFLOW_USER_PASSWORD": worker_password},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert granted.returncode == 0, granted.stderr

    worker_args = [
        _substitute(str(a), {"TLBENCH_GRID": str(grid)}) for a in compose["services"]["worker"]["command"]
    ]
    workers = [
        subprocess.Popen([*cli, *worker_args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outs = [w.communicate(timeout=400)[0].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outs
    tune = subprocess.run(
        [*cli, *shlex.split(f"tune --grid {grid} --select '*/linear_probe/sgd/*' --trials 2")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert tune.returncode == 0, tune.stderr

    os.environ.update(MLFLOW_TRACKING_USERNAME="worker", MLFLOW_TRACKING_PASSWORD=worker_password)
    try:
        client = MlflowClient(f"http://127.0.0.1:{port}")
        runs = client.search_runs([client.get_experiment_by_name("stack").experiment_id])
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME"), os.environ.pop("MLFLOW_TRACKING_PASSWORD")
    cells = [
        r.info.run_name for r in runs if r.info.status == "FINISHED" and "tlbench.variant" not in r.data.tags
    ]
    assert sorted(cells) == sorted(set(cells)) and len(cells) == 6  # each cell once across both workers
    assert len({r.data.tags["tlbench.pid"] for r in runs if "tlbench.variant" not in r.data.tags}) == 2
    assert "RUNNING" not in {r.info.status for r in runs}
    studies = services.wait_http(f"http://127.0.0.1:{dash_port}/api/studies", dashboard)
    assert '"study_name": "stack/' in studies  # the dashboard reads the studies the worker's tune wrote
    seen = [*process_cmdlines(), *outs, tune.stdout, tune.stderr, granted.stderr]
    seen += [services.output(p, tail=10**7) for p in (server, dashboard)]
    for secret in (db_password, admin_password, worker_password):
        assert not any(secret in text for text in seen)  # no process list, console or log shows it
