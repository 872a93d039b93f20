"""Downloads fail fast: the offline switch and the reachability probe answer in seconds, and the
probe takes the route the download will (the environment's proxy, NO_PROXY)."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import free_port

from tlbench.data.fetching import (
    download_blocker,
    expected_md5,
    offline_reason,
    proxy_for,
    read_timeout,
    socket_timeout,
    source_url,
    unreachable,
)

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxy_env(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_an_unroutable_host_is_reported_within_the_probe_timeout():
    t0 = time.perf_counter()
    reason = unreachable("http://192.0.2.1/x.tar.gz", timeout=1.0)  # TEST-NET-1: never routed
    assert reason and "192.0.2.1" in reason and time.perf_counter() - t0 < 5


def test_the_offline_switches_block_downloads_without_touching_the_network(monkeypatch):
    monkeypatch.delenv("TLBENCH_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "HF_HUB_OFFLINE" in (offline_reason() or "")
    assert "offline" in (download_blocker("https://example.invalid/x") or "")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert offline_reason() is None


def test_socket_timeout_is_restored():
    before = socket.getdefaulttimeout()
    with socket_timeout(7.0):
        assert socket.getdefaulttimeout() == 7.0
    assert socket.getdefaulttimeout() == before


def test_the_proxy_is_the_one_urllib_uses_and_no_proxy_bypasses_it(monkeypatch, no_proxy_env):
    assert proxy_for("http://files.example/x.zip") is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("HTTPS_PROXY", "proxy.corp:3129")  # no scheme: urllib's http:// is meant
    assert proxy_for("http://files.example/x.zip") == "http://proxy.corp:3128"
    assert proxy_for("https://files.example/x.zip") == "http://proxy.corp:3129"
    monkeypatch.setenv("NO_PROXY", "localhost,.example")
    assert proxy_for("https://files.example/x.zip") is None
    assert proxy_for("https://huggingface.co/x") == "http://proxy.corp:3129"


def test_behind_a_dead_proxy_the_probe_names_the_proxy_not_the_origin(monkeypatch, no_proxy_env):
    """The old probe connected to the origin directly; behind a proxy that is the wrong question."""
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HTTP_PROXY", dead)
    t0 = time.perf_counter()
    reason = unreachable("http://files.example/x.zip", timeout=2)
    assert reason and f"http://files.example/x.zip through proxy {dead}" in reason
    assert "Refused" in reason and time.perf_counter() - t0 < 5


class _Status(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        code = int(self.path.strip("/"))
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_any_answer_but_a_gateway_refusal_counts_as_reachable(no_proxy_env):
    """A host's root answering 404 or 405 to a HEAD is up; a proxy's 407 or 502 is not."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert unreachable(f"{base}/200") is None
        assert unreachable(f"{base}/404") is None and unreachable(f"{base}/405") is None
        assert "HTTP 407" in (unreachable(f"{base}/407") or "")
        assert "HTTP 502" in (unreachable(f"{base}/502") or "")
    finally:
        server.shutdown()
        server.server_close()


def test_url_overrides_and_their_md5(monkeypatch):
    official, mirror = "https://origin/x.tgz", "http://mirror/x.tgz"
    monkeypatch.delenv("T_URL", raising=False)
    monkeypatch.delenv("T_MD5", raising=False)
    assert source_url("T_URL", official) == official
    monkeypatch.setenv("T_URL", mirror)
    assert source_url("T_URL", official) == mirror
    assert expected_md5("T_MD5", "abc", mirror, official) == "abc"  # a mirror serves the same file
    monkeypatch.setenv("T_MD5", "def")
    assert expected_md5("T_MD5", "abc", mirror, official) == "def"
    assert expected_md5("T_MD5", "abc", official, official) == "abc"  # never for the official URL
    monkeypatch.setenv("T_MD5", "")
    assert expected_md5("T_MD5", "abc", mirror, official) is None


def test_the_download_timeout_can_be_set(monkeypatch):
    monkeypatch.setenv("TLBENCH_DOWNLOAD_TIMEOUT", "2.5")
    assert read_timeout() == 2.5
    with socket_timeout():
        assert socket.getdefaulttimeout() == 2.5
    monkeypatch.setenv("TLBENCH_DOWNLOAD_TIMEOUT", "soon")
    assert read_timeout() == 60.0
