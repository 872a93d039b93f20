"""Authentication for ``tlbench server``: MLflow's own basic-auth app, with safe settings.

MLflow's auth app (``mlflow server --app-name basic-auth``) keeps users and per-experiment
permissions in a database of its own and reads its settings from an ini file. Its shipped file
keeps that database in the current folder and gives every user READ on everything; here the
database sits beside the backend store, the default permission is a server option (tlbench's
default: ``NO_PERMISSIONS``, least privilege: an account sees the experiments it created and
those it was granted), and the admin's password is the secret's at every start (created or
replaced before MLflow starts, so no default password ever works). Secrets travel only through
the environment and a private ini file, never a command line.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from tlbench.dburl import redact, with_driver
from tlbench.security import SecretError, read_secret

ADMIN_USERNAME_ENV = "TLBENCH_MLFLOW_ADMIN_USERNAME"
ADMIN_PASSWORD_ENV = "TLBENCH_MLFLOW_ADMIN_PASSWORD"
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"  # MLflow's own name: CSRF tokens, one for all workers
AUTH_DB_ENV = "TLBENCH_SERVER_AUTH_DB"
PERMISSIONS = ("NO_PERMISSIONS", "READ", "USE", "EDIT", "MANAGE")
DEFAULT_PERMISSION = "NO_PERMISSIONS"
AUTH_CACHE_S = 60
MIN_PASSWORD_LENGTH = 12  # MLflow's own password policy
LEGACY_PASSWORD = "password1234"  # what MLflow < 3.16.1 created the admin with (GHSA-gq3w-7jj3-x7gr)
HOW_TO_SET = (
    f"set {ADMIN_PASSWORD_ENV} (or {ADMIN_PASSWORD_ENV}_FILE=/path/to/file) in the server's "
    "environment, at least 12 characters, e.g. "
    f"export {ADMIN_PASSWORD_ENV}_FILE=~/.config/tlbench/admin-password; or start it on 127.0.0.1, "
    "or with --insecure-no-auth on a trusted network"
)


@dataclass(frozen=True)
class AuthSetup:
    """What the auth app needs; the secrets stay out of ``repr`` (and so out of tracebacks)."""

    admin_username: str
    admin_password: str = field(repr=False)
    secret_key: str = field(repr=False)
    default_permission: str
    database_uri: str = field(repr=False)

    def describe(self) -> str:
        return (
            f"authentication on: admin {self.admin_username!r}, default permission "
            f"{self.default_permission}, users in {redact(self.database_uri)}"
        )


def auth_database_uri(backend_store_uri: str) -> str:
    """Beside the backend store: ``.../mlflow.db`` -> ``.../mlflow-auth.db`` for SQLite; the same
    database for a server (its tables and its ``alembic_version_auth`` table are MLflow's own,
    apart from the tracking tables), so no second database has to be created."""
    if backend_store_uri.startswith("sqlite:///"):
        db = Path(backend_store_uri.removeprefix("sqlite:///"))
        suffix = db.suffix or ".db"
        return f"sqlite:///{db.with_name(f'{db.stem}-auth{suffix}')}"
    return backend_store_uri


def auth_setup(backend_store_uri: str, default_permission: str, auth_db: str | None = None) -> AuthSetup:
    """The admin and key from the environment (or ``*_FILE``), checked before anything binds."""
    password = read_secret(ADMIN_PASSWORD_ENV, hint=f"; {HOW_TO_SET}")
    if password is None:
        raise SecretError(
            f"the server is exposed, so authentication is on and needs an admin password: {HOW_TO_SET}"
        )
    if len(password) < MIN_PASSWORD_LENGTH or password == LEGACY_PASSWORD:
        raise SecretError(
            f"{ADMIN_PASSWORD_ENV}: give at least {MIN_PASSWORD_LENGTH} characters, not MLflow's old "
            "default (e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    username = os.environ.get(ADMIN_USERNAME_ENV) or "admin"
    key = read_secret(SECRET_KEY_ENV) or secrets.token_urlsafe(32)  # this start's: shared by its workers
    if default_permission not in PERMISSIONS:
        raise SecretError(
            f"--default-permission {default_permission}: choose one of {', '.join(PERMISSIONS)}"
        )
    database = auth_db or os.environ.get(AUTH_DB_ENV) or auth_database_uri(backend_store_uri)
    return AuthSetup(username, password, key, default_permission, with_driver(database))


def write_config(setup: AuthSetup, folder: Path) -> Path:
    """The auth app's ini file, readable by this user only (it may hold the database password)."""
    path = folder / "basic_auth.ini"
    text = (
        "[mlflow]\n"
        f"default_permission = {setup.default_permission}\n"
        f"database_uri = {setup.database_uri.replace('%', '%%')}\n"
        f"admin_username = {setup.admin_username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # a worker sends a request per epoch, heartbeat and claim: its (correct) password is
        # checked once a minute per server process instead of a PBKDF2 hash each time; a
        # changed or revoked password takes effect within that minute
        f"auth_cache_ttl_seconds = {AUTH_CACHE_S}\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def ensure_admin(setup: AuthSetup) -> str:
    """Create the admin with the secret's password, or set it to the secret's (a changed secret
    rotates it; an admin made by an older MLflow with its public default loses that). Returns
    what was done: ``created``, ``password replaced`` or ``unchanged``."""
    if setup.database_uri.startswith("sqlite:///"):
        Path(setup.database_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore
    except ImportError as err:
        raise SecretError(f"MLflow's auth app is not installed ({err}): pip install 'mlflow[auth]'") from None
    store = SqlAlchemyStore()
    try:
        store.init_db(setup.database_uri)
    except Exception as err:  # unreachable database, bad credentials: the message, not a traceback
        raise SecretError(f"cannot open the users database {redact(setup.database_uri)}: {err}") from None
    name, password = setup.admin_username, setup.admin_password
    if not store.has_user(name):
        store.create_user(name, password, is_admin=True)
        return "created"
    if store.authenticate_user(name, password):
        store.update_user(name, is_admin=True)
        return "unchanged"
    store.update_user(name, password=password, is_admin=True)
    return "password replaced"


def server_env(setup: AuthSetup, config: Path) -> dict[str, str]:
    """The variables ``mlflow server --app-name basic-auth`` and its workers read."""
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        SECRET_KEY_ENV: setup.secret_key,
        "MLFLOW_AUTH_ADMIN_USERNAME": setup.admin_username,
    }
