"""Downloads that fail in seconds: an offline switch, a reachability probe and a socket timeout.

torchvision's downloads open URLs without a timeout, so on a GPU node behind a firewall that
drops packets a first run could hang for minutes before saying anything. Before a download we
check ``TLBENCH_OFFLINE`` / ``HF_HUB_OFFLINE`` and probe the source's host (a TCP connect with a
short timeout); the download itself runs under a socket timeout, so a stalled transfer ends too.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

OFFLINE_ENVS = ("TLBENCH_OFFLINE", "HF_HUB_OFFLINE")
PROBE_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 60.0


def offline_reason() -> str | None:
    """Why downloads are off (an env switch), or None."""
    for name in OFFLINE_ENVS:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{name}={os.environ[name]}: offline"
    return None


def unreachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why ``url``'s host cannot be reached (DNS, refused, timeout), or None when a TCP connect works."""
    parsed = urlparse(url)
    if not parsed.hostname:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return None
    except OSError as err:
        return f"{parsed.hostname} unreachable ({type(err).__name__}: {err})"


def download_blocker(url: str) -> str | None:
    """Why a download from ``url`` would not work right now (offline switch or no route), or None."""
    return offline_reason() or (unreachable(url) if url else None)


@contextmanager
def socket_timeout(seconds: float = READ_TIMEOUT_S) -> Iterator[None]:
    """Every new socket times out after ``seconds`` of silence (urllib without a timeout uses this)."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)
