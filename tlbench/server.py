"""``tlbench server``: the MLflow tracking server many machines share, on a PostgreSQL store.

Workers on every node point ``--tracking-uri http://HOST:PORT`` at it; artifacts (checkpoints,
plots) go through the server's artifact proxy into ``--artifacts-destination`` (a local folder
of the server, or s3://... / gs://...), so nodes need no shared filesystem for them.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tlbench.dburl import redact, with_driver

DEFAULT_ARTIFACTS = Path("mlruns") / "server-artifacts"


def server_command(
    backend_store_uri: str,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    artifacts_destination: str | None = None,
    workers: int = 2,
    allowed_hosts: str | None = None,
) -> list[str]:
    """The ``mlflow server`` command line for this store (psycopg 3 driver for PostgreSQL)."""
    if "://" not in backend_store_uri:
        raise ValueError(
            f"--backend-store-uri {backend_store_uri!r}: give a database URL such as "
            "postgresql://USER:PASS@HOST:5432/mlflow (or sqlite:///PATH.db for a single machine)"
        )
    dest = artifacts_destination or DEFAULT_ARTIFACTS.resolve().as_uri()
    if "://" not in dest:
        dest = Path(dest).resolve().as_uri()
    mlflow_bin = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    cmd = [
        mlflow_bin,
        "server",
        "--backend-store-uri",
        with_driver(backend_store_uri),
        "--artifacts-destination",
        dest,
        "--serve-artifacts",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    return cmd


def describe(cmd: list[str]) -> str:
    """The command with any database password hidden, for the console."""
    return " ".join(redact(part) if "://" in part else part for part in cmd)
