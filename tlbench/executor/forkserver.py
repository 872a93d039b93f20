"""Where pool workers come from: a forkserver that imported torch, timm and MLflow once.

A spawned worker imports torch, timm, MLflow and tlbench itself before its first cell (~7 s on
a 2-core machine, paid by every worker of every grid, and again for every replacement). The
forkserver is started as soon as a grid is known to need a pool (``start_early``), so its
imports run while this process reads the grid and opens the store; every worker is then a fork
of it, ready at once, and a notebook's second ``run_grid`` finds it still running. It never runs
a torch operation (no OpenMP pool to inherit) nor touches CUDA (a worker picks its GPU with
``CUDA_VISIBLE_DEVICES`` before CUDA starts), which is why PyTorch names this start method next
to ``spawn`` for CUDA.

A forked worker takes this process's environment as it is when the worker starts (``adopt``).
What its libraries read once, at import (huggingface_hub's endpoint and offline switch, the
cache folders, OpenMP's and matplotlib's settings), the forkserver read when it started; a
forkserver whose environment differs from this process's in one of those (``IMPORT_TIME``) is
replaced. ``TLBENCH_START_METHOD=spawn`` gives every worker a fresh interpreter instead.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
from multiprocessing import forkserver
from typing import Any

PRELOAD = ["tlbench.executor.preload"]
# what the preloaded libraries read from the environment when imported (prefixes); the rest
# (TLBENCH_*, MLFLOW_*, CUDA_VISIBLE_DEVICES, telemetry ids libraries set for themselves) is
# read when used, from the environment a worker adopts
IMPORT_TIME = (
    "HF_",
    "HUGGINGFACE_",
    "XDG_",
    "TORCH_",
    "PYTORCH_",
    "TIMM_",
    "OMP_",
    "KMP_",
    "MKL_",
    "OPENBLAS_",
    "MPL",
    "PYTHON",
    "HOME",
    "LD_",
)
METHOD_ENV = "TLBENCH_START_METHOD"  # "spawn": a fresh interpreter per worker

_started_with: dict[str, str] | None = None


def method() -> str:
    """``forkserver`` where the platform has it (not Windows), else ``spawn``."""
    chosen = os.environ.get(METHOD_ENV, "").strip().lower() or "forkserver"
    return chosen if chosen in ("spawn", "forkserver") and chosen in mp.get_all_start_methods() else "spawn"


def imported_env(env: dict[str, str]) -> dict[str, str]:
    """The part of an environment the preloaded libraries read at import."""
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME)}


def context() -> Any:
    """The multiprocessing context workers start from: the forkserver running, with an
    import-time environment that matches this process's."""
    global _started_with
    chosen = method()
    ctx = mp.get_context(chosen)
    if chosen != "forkserver":
        return ctx
    now = imported_env(dict(os.environ))
    if _started_with is not None and _started_with != now:
        forkserver._forkserver._stop()  # its imports saw another environment
        _started_with = None
    if _started_with is None:
        ctx.set_forkserver_preload(PRELOAD)
        forkserver.ensure_running()
        _started_with = now
    return ctx


def start_early(workers: str | int, backend: str = "local") -> None:
    """Start the forkserver now if this run will have a pool, so that its imports overlap the
    grid's checks and the store's opening."""
    if backend == "ray" or str(workers) == "1":
        return
    context()


def adopt(env: dict[str, str]) -> None:
    """In a new worker: the environment the parent had when it started it."""
    if dict(os.environ) != env:
        os.environ.clear()
        os.environ.update(env)
        tempfile.tempdir = None  # re-read TMPDIR
