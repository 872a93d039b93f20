"""Downloads that fail in seconds, on the network the user has: offline switches, proxies, mirrors.

torchvision's downloads open URLs with urllib and no timeout, so on a GPU node behind a firewall
that drops packets a first run could hang for minutes before saying anything. Before a download
we check ``TLBENCH_OFFLINE`` / ``HF_HUB_OFFLINE`` and probe the URL with the client that will
download it: a HEAD through urllib, so ``HTTP(S)_PROXY`` / ``NO_PROXY`` apply exactly as they will
to the download (a direct TCP connect to the origin fails behind a proxy that the download would
use). The download itself runs under a socket timeout, so a stalled transfer ends too. Every
dataset URL can be replaced by an environment variable (a mirror), named in docs/datasets.md.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

OFFLINE_ENVS = ("TLBENCH_OFFLINE", "HF_HUB_OFFLINE")
PROBE_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 60.0
TIMEOUT_ENV = "TLBENCH_DOWNLOAD_TIMEOUT"  # seconds of silence before a dataset download gives up
_BLOCKING_STATUS = {
    407: "proxy authentication required",
    502: "bad gateway",
    503: "unavailable",
    504: "gateway timeout",
}


def offline_reason() -> str | None:
    """Why downloads are off (an env switch), or None."""
    for name in OFFLINE_ENVS:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{name}={os.environ[name]}: offline"
    return None


def proxy_for(url: str) -> str | None:
    """The proxy urllib (and huggingface_hub's httpx, which reads the same variables) uses for ``url``.

    ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` by the URL's scheme, None when ``NO_PROXY``
    names the host (urllib's own matching) or no proxy is set.
    """
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or not parts.hostname:
        return None
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    if urllib.request.proxy_bypass(host) or urllib.request.proxy_bypass(parts.hostname):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def route(url: str) -> str:
    """``url`` and how it is reached, for messages: "URL through proxy P" or "URL (no proxy)"."""
    proxy = proxy_for(url)
    return f"{url} through proxy {proxy}" if proxy else f"{url} (direct, no proxy set for it)"


def unreachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why ``url`` cannot be reached, or None when it answers a HEAD (any HTTP status but a
    proxy's or gateway's refusal: a host that answers 403/404/405 to a HEAD of its root is up).

    The HEAD goes through urllib with the environment's proxies, as the download will.
    """
    if not urlsplit(url).hostname:
        return None
    try:
        opener = urllib.request.build_opener()  # its ProxyHandler reads the environment now
        with opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError as err:
        if err.code not in _BLOCKING_STATUS:
            return None
        return f"{route(url)} answered HTTP {err.code} ({_BLOCKING_STATUS[err.code]})"
    except (OSError, ValueError) as err:  # URLError (DNS, refused, tunnel refused), timeout, bad proxy URL
        reason = getattr(err, "reason", err)
        return f"{route(url)} could not be reached ({type(reason).__name__}: {reason}; timeout {timeout:g} s)"


def download_blocker(url: str) -> str | None:
    """Why a download from ``url`` would not work right now (offline switch or no route), or None."""
    return offline_reason() or (unreachable(url) if url else None)


def read_timeout() -> float:
    """Seconds of silence before a dataset download gives up: ``TLBENCH_DOWNLOAD_TIMEOUT`` or 60."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        return float(raw) if raw and float(raw) > 0 else READ_TIMEOUT_S
    except ValueError:
        return READ_TIMEOUT_S


@contextmanager
def socket_timeout(seconds: float | None = None) -> Iterator[None]:
    """Every new socket times out after ``seconds`` of silence (urllib without a timeout uses this);
    ``read_timeout()`` when not given."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds if seconds is not None else read_timeout())
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def source_url(env: str, default: str) -> str:
    """The URL a dataset downloads from: the ``env`` override (a mirror) when set, else ``default``."""
    return os.environ.get(env, "").strip() or default


def expected_md5(env: str, default: str | None, url: str, default_url: str) -> str | None:
    """The MD5 a download is checked against (None: unchecked).

    The official URL: the official MD5, always. An overridden URL: ``env`` when set (empty: do not
    check, for a mirror that serves a repacked file), else the official MD5 (a mirror serves the
    same file).
    """
    if url == default_url or env not in os.environ:
        return default
    return os.environ[env].strip() or None


def warn_unchecked(what: str, url: str, env: str) -> None:
    """Say (on stderr) that a mirror's file is not checksummed, because the user asked so."""
    print(f"warning: {what}: {url} is not checked against an MD5 ({env} is empty)", file=sys.stderr)
