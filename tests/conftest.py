"""Shared test set-up: offline, quiet, tiny; every MLflow store is a temporary one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub traffic from tests, and fail fast if tried
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ["COLUMNS"] = "250"  # rich tables: no wrapped cell names in captured output

REPO = Path(__file__).resolve().parents[1]


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


def _pg_bin() -> Path | None:
    """Debian's PostgreSQL server binaries (initdb, pg_ctl), if installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    data, port = Path(root) / "data", _free_port()
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
