"""Where studies live: a journal file by default, an RDB (PostgreSQL) for many machines.

Optuna's docs: SQLite is not safe for parallel workers, the journal file backend is; several
machines share a PostgreSQL database.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tlbench.dburl import redact, with_driver
from tlbench.errors import TlbenchError
from tlbench.tracking import DEFAULT_STORE_DIR

if TYPE_CHECKING:
    import optuna

DEFAULT_STORAGE = DEFAULT_STORE_DIR / "optuna.journal"
STORAGE_ENV = "TLBENCH_OPTUNA_STORAGE"
RDB_SCHEMES = ("postgresql", "mysql", "sqlite", "oracle", "mssql")


class TuneError(TlbenchError, ValueError):
    """Bad tuning input (storage URL, trial count, pruner): one clear message for the CLI."""


def resolve_storage_url(url: str | None) -> str:
    """``--storage`` > ``TLBENCH_OPTUNA_STORAGE`` > the journal file ``./mlruns/optuna.journal``."""
    return url or os.environ.get(STORAGE_ENV) or str(DEFAULT_STORAGE.resolve())


def open_storage(url: str | None = None) -> optuna.storages.BaseStorage:
    """An Optuna storage: an RDB URL (``postgresql://``, ``mysql://``, ``sqlite:///``) or a path
    to a journal file (created with its folder), safe for several local processes."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    url = resolve_storage_url(url)
    if "://" in url:
        scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
        if scheme not in RDB_SCHEMES:
            raise TuneError(
                f"unknown storage {url!r}: use a journal file path (default {DEFAULT_STORAGE}), "
                "sqlite:///FILE.db, or postgresql://USER:PASS@HOST/DB for many machines"
            )
        return _open_rdb(url)
    path = Path(url).expanduser()
    if path.is_dir():
        raise TuneError(
            f"storage {url!r} is a folder; give a journal file path such as {path / 'optuna.journal'}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _open_rdb(url: str, attempts: int = 6) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage; processes that meet an empty database at once race to create its
    tables (a unique violation for all but one), so that is retried, not reported."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(with_driver(url))
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())
        except ImportError as err:
            raise TuneError(
                f"storage {redact(url)}: its database driver is missing ({err}); "
                "pip install 'tlbench[postgres]' for PostgreSQL"
            ) from None
        except Exception as err:  # connection refused, bad credentials, unknown database
            raise TuneError(f"cannot open storage {redact(url)}: {type(err).__name__}: {err}") from None
    raise AssertionError("unreachable")
