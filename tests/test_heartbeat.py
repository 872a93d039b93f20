"""Live or dead: a process gone from this host and PID namespace is known dead at once; one that
is alive, or on another host or PID namespace (containers sharing a hostname), keeps the
heartbeat rule. Real processes, a real store; nothing trains."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from helpers import make_cell

from tlbench.tracking import Tracker, tags
from tlbench.tracking.claims import claim, claim_key, claims_experiment
from tlbench.tracking.heartbeat import host_identity, owner_gone, owner_tags, process_start

pytestmark = pytest.mark.skipif(not host_identity(), reason="needs /proc (Linux)")


@pytest.fixture(scope="module")
def dead_owner() -> dict[str, str]:
    """The owner tags a real process wrote, after it was SIGKILLed (and reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    start = process_start(proc.pid)
    proc.kill()
    proc.wait(timeout=30)
    assert start is not None and process_start(proc.pid) is None
    return {tags.HOST_ID: host_identity(), tags.PID: str(proc.pid), tags.PID_START: start}


@pytest.fixture(scope="module")
def tracker(tmp_path_factory) -> Tracker:
    return Tracker(f"sqlite:///{tmp_path_factory.mktemp('hb') / 'mlflow.db'}")


def test_the_owner_is_identified_beyond_its_hostname():
    mine = owner_tags()
    assert mine[tags.PID] == str(os.getpid()) and mine[tags.HOST]
    boot, _, pidns = mine[tags.HOST_ID].rpartition("/")
    assert boot and int(pidns) == os.stat("/proc/self/ns/pid").st_ino
    assert not owner_gone(mine)  # this very process: alive


def test_a_gone_or_reused_pid_is_dead_only_on_the_same_host_and_pid_namespace(dead_owner):
    assert owner_gone(dead_owner)
    reused = {**owner_tags(), tags.PID_START: "1"}  # our PID, but another process's start time
    assert owner_gone(reused)
    boot, _, pidns = host_identity().rpartition("/")
    other_host = {**dead_owner, tags.HOST_ID: f"another-boot-id/{pidns}"}
    other_namespace = {**dead_owner, tags.HOST_ID: f"{boot}/{int(pidns) + 1}"}  # a container
    legacy = {tags.PID: dead_owner[tags.PID], tags.HOST: "same-hostname"}  # written before #16
    assert not any(owner_gone(t) for t in (other_host, other_namespace, legacy))


def _rival(tracker: Tracker, cell, owner: dict[str, str]) -> str:
    """A claim on ``cell`` with a fresh heartbeat, as another process would have made it."""
    exp = tracker.experiment_id(cell.grid)
    run = tracker.client.create_run(
        claims_experiment(tracker),
        tags={tags.CLAIM: claim_key(exp, cell.id, None), tags.HEARTBEAT: f"{time.time():.3f}", **owner},
    )
    return run.info.run_id


def test_a_claim_of_a_dead_process_on_this_host_is_taken_at_once(tracker, dead_owner):
    cell = make_cell(grid="hb-dead")
    rival = _rival(tracker, cell, dead_owner)
    held = claim(tracker, tracker.experiment_id("hb-dead"), cell)
    assert held is not None  # not "running elsewhere" for the next 100 s
    assert tracker.client.get_run(rival).info.lifecycle_stage == "deleted"
    held.release()


@pytest.mark.parametrize("who", ["alive here", "other host", "other pid namespace"])
def test_a_claim_is_kept_while_its_owner_may_live(tracker, dead_owner, who):
    boot, _, pidns = host_identity().rpartition("/")
    owner = {
        "alive here": owner_tags(),
        "other host": {**dead_owner, tags.HOST_ID: f"another-boot-id/{pidns}"},
        "other pid namespace": {**dead_owner, tags.HOST_ID: f"{boot}/{int(pidns) + 1}"},
    }[who]
    cell = make_cell(grid=f"hb-{who.replace(' ', '-')}")
    rival = _rival(tracker, cell, owner)
    assert claim(tracker, tracker.experiment_id(cell.grid), cell) is None  # left to its holder
    assert tracker.client.get_run(rival).info.status == "RUNNING"
    tracker.client.delete_run(rival)


def test_a_cell_run_of_a_dead_process_is_reaped_at_once_a_remote_one_is_not(tracker, dead_owner):
    cell = make_cell(grid="hb-reap")
    exp = tracker.experiment_id("hb-reap")
    here = tracker.client.create_run(exp, tags={tags.CELL_ID: cell.id, **dead_owner})
    remote = tracker.client.create_run(
        exp, tags={tags.CELL_ID: cell.id, **dead_owner, tags.HOST_ID: "another-boot-id/1"}
    )
    live = tracker.start_cell(exp, cell)  # this process: owner tags and a fresh heartbeat
    assert tracker.reap_stale(exp) == [here.info.run_id]
    reaped = tracker.client.get_run(here.info.run_id)
    assert reaped.info.status == "KILLED" and "on this host) is gone" in reaped.data.tags[tags.REASON]
    assert tracker.client.get_run(remote.info.run_id).info.status == "RUNNING"  # heartbeat rule
    live.end("FINISHED")
    tracker.client.set_terminated(remote.info.run_id, "KILLED")


def test_after_an_outage_a_stale_heartbeat_is_trusted_only_once_its_process_could_beat(tracker, monkeypatch):
    """A reaper that just lost the server (a retry failed) waits one beat's chance before it
    takes a stale heartbeat for a dead process: the run that beats again is kept, the silent one
    reaped. Before #29 both were reaped at once."""
    from tlbench.tracking.heartbeat import contact_needed, is_dead
    from tlbench.tracking.retries import CONTACT

    monkeypatch.setenv("TLBENCH_HEARTBEAT_S", "0.2")  # stale after 1.6 s; trusted after 6.2 s
    cell = make_cell(grid="hb-outage")
    exp = tracker.experiment_id("hb-outage")
    other = {tags.HOST_ID: "another-boot-id/1", tags.PID: "4242", tags.PID_START: "1"}
    old = f"{time.time() - 60:.0f}"  # its beats did not land through the outage
    alive, dead = (
        tracker.client.create_run(exp, tags={tags.CELL_ID: cell.id, tags.HEARTBEAT: old, **other})
        for _ in range(2)
    )
    monkeypatch.setattr(CONTACT, "since", time.time())  # this process's request just failed
    assert not is_dead(other, float(old))  # not yet: this process could not have seen a beat
    stop = threading.Event()

    def beats_once_the_server_is_back() -> None:
        stop.wait(2.0)
        while not stop.wait(0.2):
            tracker.client.set_tag(alive.info.run_id, tags.HEARTBEAT, f"{time.time():.3f}")

    beating = threading.Thread(target=beats_once_the_server_is_back)
    beating.start()
    started = time.time()
    try:
        reaped = tracker.reap_stale(exp)
    finally:
        stop.set()
        beating.join()
    assert time.time() - started >= contact_needed() - 1  # it waited for the beat's chance
    assert reaped == [dead.info.run_id]
    assert tracker.client.get_run(alive.info.run_id).info.status == "RUNNING"
    assert is_dead(other, float(old))  # contact long enough now: staleness is proof again
    tracker.client.set_terminated(alive.info.run_id, "KILLED")
