"""A pool worker whose parent died (SIGKILL, the OOM killer) does not wait forever for a task:
it notices between cells and exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

# a parent that starts one idle worker, says its pid, then waits to be killed
PARENT = """
import sys, time
from tlbench.executor import forkserver
from tlbench.executor.options import RunOptions
from tlbench.executor.pool import _start_worker
from tlbench.executor.worker import Slot

ctx = forkserver.context()
events = ctx.Queue()
w = _start_worker(ctx, Slot(0, None, 1), events, RunOptions(sys.argv[1], "0"))
print(w.proc.pid, flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone but for its exit status
        return f.read().split(")")[-1].split()[0] != "Z"


def test_an_orphaned_worker_exits_instead_of_waiting_for_tasks(tmp_path):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, store], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        worker = int(parent.stdout.readline())
        time.sleep(1.0)
        assert _alive(worker)  # idle, waiting for a task
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.time() + 20
        while _alive(worker) and time.time() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the worker outlived its parent"
    finally:
        parent.kill()
