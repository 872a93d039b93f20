"""``tlbench server``: the MLflow tracking server many machines share, on a PostgreSQL store.

Workers on every node point ``--tracking-uri http://HOST:PORT`` at it; artifacts (checkpoints,
plots) go through the server's artifact proxy into ``--artifacts-destination`` (a local folder
of the server, or s3://... / gs://...), so nodes need no shared filesystem for them. The store's
URL (it may hold the database password) reaches ``mlflow server`` through the environment
(``MLFLOW_BACKEND_STORE_URI``), never its command line; authentication: ``tlbench.server.auth``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from tlbench.dburl import redact, with_driver
from tlbench.security import SecretError

DEFAULT_ARTIFACTS = Path("mlruns") / "server-artifacts"
STORE_ENV = "TLBENCH_SERVER_STORE"


def server_command(
    backend_store_uri: str,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    artifacts_destination: str | None = None,
    workers: int = 2,
    allowed_hosts: str | None = None,
    auth: bool = False,
) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line (no secret in it) and the variables it needs on top of
    this environment: the store's URL (psycopg 3 driver for PostgreSQL)."""
    if "://" not in backend_store_uri:
        raise SecretError(
            f"backend store {redact(backend_store_uri)!r}: give a database URL such as "
            "postgresql://USER@HOST:5432/mlflow (or sqlite:///PATH.db for a single machine)"
        )
    dest = artifacts_destination or DEFAULT_ARTIFACTS.resolve().as_uri()
    if "://" not in dest:
        dest = Path(dest).resolve().as_uri()
    mlflow_bin = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    cmd = [mlflow_bin, "server", "--artifacts-destination", dest, "--serve-artifacts"]
    cmd += ["--host", host, "--port", str(port), "--workers", str(workers)]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    if auth:
        cmd += ["--app-name", "basic-auth"]
    env = {
        "MLFLOW_BACKEND_STORE_URI": with_driver(backend_store_uri),
        # never MLflow's: a stray one would replace the store given here
        "MLFLOW_REGISTRY_STORE_URI": with_driver(backend_store_uri),
        # MLflow's job runner (GenAI evaluation jobs) is one more process tlbench never uses
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
    }
    return cmd, env


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without the secrets only tlbench reads, plus ``extra``."""
    from tlbench.server.auth import ADMIN_PASSWORD_ENV

    drop = {STORE_ENV, ADMIN_PASSWORD_ENV, f"{ADMIN_PASSWORD_ENV}_FILE"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def describe(cmd: list[str]) -> str:
    """The command for the console (it holds no secret; URLs are redacted all the same)."""
    return " ".join(redact(part) if "://" in part else part for part in cmd)
