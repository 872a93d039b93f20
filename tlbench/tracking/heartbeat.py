"""Telling live processes from dead ones: one heartbeat and one staleness rule for all.

A cell run, a claim and a tuning trial each carry a timestamp that a background thread of the
process working on it refreshes every ``heartbeat_interval()`` seconds. Whoever finds one older
than ``stale_after()`` takes its process as gone (SIGKILL, an OOM kill, a lost node) and may
clean up after it. Where the timestamp is stored differs (an MLflow tag, an Optuna user
attribute): the caller passes the function that writes it.

Faster on one machine: a run or claim also records its owner (``owner_tags``: host identity,
PID, the process's start time). A process that provably shares the owner's host *and* PID
namespace (same boot id and PID-namespace inode: containers sharing a hostname differ) and
finds that PID gone, a zombie, or reused by a later process (another start time) knows the owner
is dead at once (``owner_gone``); anything it cannot prove keeps the heartbeat rule.

Outages: while the tracking server (or its database) is away no beat lands, so every heartbeat
ages. A stale heartbeat proves its process dead only to a process that has itself reached the
server, unbroken, for ``contact_needed()`` seconds: one beat interval plus a beat's timeout, the
longest a live process needs to land a beat once the server is back (beats are single tries,
never held in MLflow's backoff: ``retries.write_tags_once``). Until then the heartbeat counts as
alive (``is_dead``) and a reaper waits (``wait_for_contact``) instead of taking a live cell.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from tlbench.tracking import tags
from tlbench.tracking.retries import CONTACT


def heartbeat_interval() -> float:
    """Seconds between heartbeats (``TLBENCH_HEARTBEAT_S``, default 30)."""
    return max(0.2, float(os.environ.get("TLBENCH_HEARTBEAT_S", "30")))


def stale_after() -> float:
    """Seconds without a heartbeat after which a process is taken as gone: three missed beats
    plus a margin for a slow store (10 s, less for the sub-second beats of tests)."""
    beat = heartbeat_interval()
    return 3 * beat + min(10.0, 5 * beat)


def beat_timeout() -> float:
    """Seconds one heartbeat may take before it counts as failed (the next beat tries again)."""
    limit = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "120"))
    return min(limit, max(5.0, heartbeat_interval()))


def contact_needed() -> float:
    """Seconds of unbroken contact with the server after which every live process has landed a
    beat: an interval, a beat's timeout and the staleness margin."""
    beat = heartbeat_interval()
    return beat + beat_timeout() + min(10.0, 5 * beat)


def staleness_trusted(now: float | None = None) -> bool:
    """Has this process reached the server long enough for a stale heartbeat to mean a dead one?"""
    return CONTACT.unbroken_for(now) >= contact_needed()


def wait_for_contact(what: str = "a heartbeat looks stale") -> float:
    """Sleep until stale heartbeats can be trusted (``staleness_trusted``); the seconds waited.
    Said on stderr: a reaper that pauses must say why."""
    left = contact_needed() - CONTACT.unbroken_for()
    if left <= 0:
        return 0.0
    sys.stderr.write(
        f"{what}: waiting {left:.0f} s so that its process, if alive, can beat again "
        "(the tracking server may just have come back)\n"
    )
    sys.stderr.flush()
    start = time.time()
    while (left := contact_needed() - CONTACT.unbroken_for()) > 0:
        time.sleep(left)
    return time.time() - start


def is_stale(last_beat: float, now: float | None = None, limit: float | None = None) -> bool:
    """Has the process behind a heartbeat written at ``last_beat`` (unix time) gone?"""
    now = time.time() if now is None else now
    return now - last_beat > (stale_after() if limit is None else limit)


@functools.lru_cache(maxsize=1)
def host_identity() -> str:
    """``BOOT_ID/PIDNS_INODE``: equal only for processes whose PIDs mean the same thing (one
    kernel boot, one PID namespace); "" where /proc cannot tell (then only heartbeats count)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}/{pidns}" if boot else ""


def process_start(pid: int) -> str | None:
    """The start time (clock ticks after boot) of a live process ``pid`` in this PID namespace;
    None when there is none, or only its zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": state is fields[0]
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def owner_tags() -> dict[str, str]:
    """Who holds a run or claim: hostname (for people), host identity, PID and start time."""
    pid = os.getpid()
    out = {tags.HOST: socket.gethostname(), tags.PID: str(pid)}
    start = process_start(pid) if host_identity() else None
    if start is not None:
        out.update({tags.HOST_ID: host_identity(), tags.PID_START: start})
    return out


def owner_gone(recorded: Mapping[str, str]) -> bool:
    """Is the process named by ``recorded`` (a run's or claim's tags) provably dead? Only from
    the same host and PID namespace; its PID gone or reused. False whenever that cannot be told."""
    mine = host_identity()
    host, pid, start = (recorded.get(k) for k in (tags.HOST_ID, tags.PID, tags.PID_START))
    if not mine or host != mine or not pid or not start or not pid.isdigit():
        return False
    return process_start(int(pid)) != start


def is_dead(recorded: Mapping[str, str], last_beat: float, now: float | None = None) -> bool:
    """The one rule: the owner is provably gone on this host, or its heartbeat stopped while this
    process could have received it (``staleness_trusted``)."""
    return owner_gone(recorded) or (is_stale(last_beat, now) and staleness_trusted(now))


class Heartbeat:
    """Calls ``beat()`` now and then every ``heartbeat_interval()`` seconds on a daemon thread,
    until stopped (``stop()`` or leaving the ``with`` block). A failing beat (a store hiccup, an
    outage) is ignored: the next one retries, and training is never killed by its bookkeeping.
    ``last_ack``: when a beat last landed; ``on_recover()`` runs after the first beat that
    lands following failed ones (a reaper may have acted meanwhile: the owner checks)."""

    def __init__(
        self,
        beat: Callable[[], None],
        name: str = "tlbench-heartbeat",
        on_recover: Callable[[], None] | None = None,
    ):
        self._beat = beat
        self._on_recover = on_recover
        self._stop = threading.Event()
        beat()  # the first one synchronously: a new run or claim is live before anyone looks
        self.last_ack = time.time()
        CONTACT.acked(self.last_ack)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(heartbeat_interval()):
            try:
                self._beat()
            except Exception:
                failing = True
                continue
            self.last_ack = time.time()
            CONTACT.acked(self.last_ack)
            if failing and self._on_recover is not None:
                with contextlib.suppress(Exception):
                    self._on_recover()
            failing = False

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self, wait: bool = False) -> None:
        self._stop.set()
        if wait:
            self._thread.join(timeout=5)

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop(wait=True)
