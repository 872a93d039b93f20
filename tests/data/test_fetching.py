"""Downloads fail fast: the offline switch and the reachability probe answer in seconds."""

from __future__ import annotations

import socket
import time

from tlbench.data.fetching import download_blocker, offline_reason, socket_timeout, unreachable


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
