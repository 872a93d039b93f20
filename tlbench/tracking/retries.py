"""Reaching the tracking server while it comes and goes: what this process has seen of it.

MLflow's HTTP client retries a request whose connection failed (or that got a 500/502/503/504:
the server up, its database away) with exponential backoff, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``
(7) times over about four minutes, then raises: a server restart of tens of seconds costs a cell
a pause, not its run. urllib3 reports each retry in one long WARNING line that a CLI without
logging set up shows raw or not at all; this prints a short line instead (and urllib3's other
warnings as they are), and notes the failure in ``CONTACT``: a heartbeat that stopped during an
outage proves nothing to a process that could not have received it either (``heartbeat``).

Heartbeats must not sit in that backoff (a beat queued for a minute after the server is back
would let another process take a live cell for dead): ``write_tags_once`` sends one try with a
short timeout through MLflow's own request helper, and the next beat tries again.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from typing import Any

LOGGER = "urllib3.connectionpool"
LOG_BATCH = "/api/2.0/mlflow/runs/log-batch"


class Contact:
    """Since when this process has reached the server without a failed request in between
    (``since``), and when the server last acknowledged one of its heartbeats (``last_ack``)."""

    def __init__(self) -> None:
        self.since = 0.0  # a local store has no outages: staleness is trusted at once
        self.last_ack = time.time()
        self._lock = threading.Lock()
        self._began = False

    def begin(self) -> None:
        """The first tracker for a server: this process has not seen it longer than from now."""
        with self._lock:
            if not self._began:
                self._began, self.since = True, max(self.since, time.time())

    def failed(self, at: float | None = None) -> None:
        with self._lock:
            self.since = max(self.since, time.time() if at is None else at)

    def acked(self, at: float | None = None) -> None:
        with self._lock:
            self.last_ack = max(self.last_ack, time.time() if at is None else at)

    def unbroken_for(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.since


CONTACT = Contact()


class RetryNotice(logging.Handler):
    """One line per retry on stderr: which call, how many tries are left."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if msg.startswith("Retrying"):
                CONTACT.failed()
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
    CONTACT.begin()
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, RetryNotice) for h in logger.handlers):
        logger.addHandler(RetryNotice(logging.WARNING))


def write_tags_once(client: Any, run_id: str, values: dict[str, str], timeout: float) -> None:
    """Tags in one ``log-batch`` try (no retry, ``timeout`` seconds) on a tracking server; an
    ordinary ``log_batch`` on any other store. Raises when the server did not take them."""
    from mlflow.store.tracking.rest_store import RestStore

    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if not isinstance(store, RestStore):
        from mlflow.entities import RunTag

        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in values.items()])
        return
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    body = {"run_id": run_id, "tags": [{"key": k, "value": v} for k, v in values.items()]}
    try:
        response = http_request(
            store.get_host_creds(), LOG_BATCH, "POST", max_retries=0, timeout=timeout, json=body
        )
    except Exception:  # refused, timed out, or a 5xx (its database away)
        CONTACT.failed()
        raise
    verify_rest_response(response, LOG_BATCH)  # a 4xx: the server answered, it refused
