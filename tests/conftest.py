"""Shared test set-up: offline, quiet, tiny; every MLflow store is a temporary one."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub traffic from tests, and fail fast if tried
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ["COLUMNS"] = "250"  # rich tables: no wrapped cell names in captured output
# A suite started as a background job of a script (`pytest &`) inherits SIGINT *ignored*, and
# Python then never turns Ctrl-C into KeyboardInterrupt, here or in the processes the tests start
# (an ignored signal stays ignored across exec; a handled one is reset to the default): the Ctrl-C
# tests need the terminal's behaviour.
signal.signal(signal.SIGINT, signal.default_int_handler)

from helpers import free_port  # noqa: E402  (after SIGINT is restored)


@pytest.fixture(autouse=True, scope="session")
def _data_dir(tmp_path_factory):
    """Tensor caches and downloads go to a per-session folder, not ~/.cache."""
    os.environ["TLBENCH_DATA"] = str(tmp_path_factory.mktemp("tlbench-data"))
    yield


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A fresh embedded MLflow store (SQLite + artifacts) in a temporary folder."""
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


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
"""


@pytest.fixture
def write_grid(tmp_path: Path):
    """Write a grid YAML into tmp_path and return its path."""

    def _write(text: str = TINY_GRID, name: str = "tiny.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return _write


class Services:
    """Long-running processes of a test (servers, dashboards), each logging to a file.

    Never to an unread pipe: once its 64 KB buffer fills (a server logs every request), the
    process blocks in its next write, and a server whose event loop blocks stops answering.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(self, args: list[str], *, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``args`` in its own process group (stopped with the test), output to a log file."""
        log = self.folder / f"service-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        self.logs[proc.pid] = log
        return proc

    def output(self, proc: subprocess.Popen[bytes], tail: int = 6000) -> str:
        """The end of what the process printed so far."""
        return self.logs[proc.pid].read_text(errors="replace")[-tail:]

    def wait_http(self, url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> str:
        """GET ``url`` until it answers (its body), failing with the process's output if it exits."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(url) as r:
                    return r.read().decode()
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"exited {proc.returncode} before answering {url}:\n{self.output(proc)}")
                time.sleep(0.5)
        pytest.fail(f"{url} did not answer in {timeout:g} s:\n{self.output(proc)}")

    def stop_all(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


@pytest.fixture
def services(tmp_path: Path):
    """Start long-running processes that log to files and are stopped when the test ends."""
    folder = tmp_path / "service-logs"
    folder.mkdir()
    svc = Services(folder)
    yield svc
    svc.stop_all()


def _pg_bin() -> Path | None:
    """Debian's PostgreSQL server binaries (initdb, pg_ctl), if installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session: a throw-away cluster on 127.0.0.1 (trust auth),
    run as the ``postgres`` user when the tests run as root (initdb refuses root)."""
    import shutil
    import subprocess
    import tempfile

    pg = _pg_bin()
    if pg is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    as_user: list[str] = []
    root = tempfile.mkdtemp(prefix="tlbench-pg-")
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data, port = Path(root) / "data", free_port()
    subprocess.run(
        [*as_user, str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(
        [*as_user, str(pg / "pg_ctl"), "-D", str(data), "-o", opts, "-l", f"{root}/log", "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield {"host": "127.0.0.1", "port": port, "user": "postgres"}
    finally:
        subprocess.run(
            [*as_user, str(pg / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_postgres_db(postgres_server, request):
    """Creates fresh databases on the session's PostgreSQL server; returns their URLs."""
    import re

    import sqlalchemy

    from tlbench.dburl import with_driver

    base = "postgresql://{user}@{host}:{port}".format(**postgres_server)

    def make(suffix: str = "") -> str:
        name = ("t_" + re.sub(r"\W", "_", request.node.name.lower()))[:50] + suffix
        engine = sqlalchemy.create_engine(with_driver(f"{base}/postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        return f"{base}/{name}"

    return make


@pytest.fixture
def postgres_url(make_postgres_db) -> str:
    """A fresh database on the session's PostgreSQL server, as a URL."""
    return make_postgres_db()
