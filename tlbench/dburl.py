"""Database URLs shared by Optuna storages and the MLflow server: driver choice and redaction."""

from __future__ import annotations

import importlib.util


def with_driver(url: str) -> str:
    """``postgresql://`` -> ``postgresql+psycopg://`` when psycopg 3 (tlbench's ``postgres`` extra)
    is installed, whichever driver the installed SQLAlchemy would default to."""
    if url.startswith(("postgresql://", "postgres://")) and importlib.util.find_spec("psycopg"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def redact(url: str) -> str:
    """A URL without its password, for logs and MLflow tags."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
