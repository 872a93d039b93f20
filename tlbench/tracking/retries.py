"""Saying on the console that the tracking server is away while MLflow's client retries.

MLflow's HTTP client retries a request whose connection failed with exponential backoff,
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` (7) times over about four minutes, then raises: a server
restart of tens of seconds costs a cell a pause, not its run. urllib3 reports each retry in one
long WARNING line that a CLI without logging set up shows raw or not at all; this prints a short
line instead (and urllib3's other warnings as they are).
"""

from __future__ import annotations

import logging
import re
import sys

LOGGER = "urllib3.connectionpool"


class RetryNotice(logging.Handler):
    """One line per retry on stderr: which call, how many tries are left."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if msg.startswith("Retrying"):
                left = re.search(r"total=(\d+)", msg)
                path = msg.rsplit(": ", 1)[-1] if ": /" in msg else "a request"
                msg = (
                    f"MLflow tracking server unreachable ({path}): retrying, "
                    f"{left.group(1) if left else 'a few'} more tries (MLFLOW_HTTP_REQUEST_MAX_RETRIES)"
                )
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()
        except Exception:  # a console write must never break a request
            self.handleError(record)


def announce_retries() -> None:
    """Install the notice once per process (every process that talks to a tracking server)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, RetryNotice) for h in logger.handlers):
        logger.addHandler(RetryNotice(logging.WARNING))
