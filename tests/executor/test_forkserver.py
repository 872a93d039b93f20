"""Pool workers are forks of a forkserver that imported torch, timm and MLflow once: they start
with those imported, with the parent's environment as it is when they start, and a forkserver
whose imports saw another environment is replaced."""

from __future__ import annotations

import json
import os
from multiprocessing import forkserver as mp_forkserver
from pathlib import Path

import pytest

from tlbench.executor import forkserver

pytestmark = pytest.mark.skipif(
    "forkserver" not in __import__("multiprocessing").get_all_start_methods(), reason="no forkserver here"
)

# what a new worker reports before it imports anything itself (``exec`` pickles by reference)
REPORT = """
import json, os, sys
json.dump({"preloaded": [m for m in ("torch", "timm", "mlflow") if m in sys.modules],
           "env": {k: os.environ.get(k) for k in KEYS}}, open(PATH, "w"))
"""


def _report(ctx, path: Path, keys: list[str], env: dict[str, str] | None = None) -> dict:
    code = f"KEYS = {keys!r}\nPATH = {str(path)!r}\n" + REPORT
    if env is not None:  # as the pool starts its workers: the parent's environment, adopted first
        code = f"from tlbench.executor.forkserver import adopt\nadopt({env!r})\n" + code
    p = ctx.Process(target=exec, args=(code,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    return json.loads(path.read_text())


def _server_pid() -> int | None:
    return mp_forkserver._forkserver._forkserver_pid


def test_a_worker_starts_with_torch_timm_and_mlflow_already_imported(tmp_path, monkeypatch):
    monkeypatch.delenv(forkserver.METHOD_ENV, raising=False)
    ctx = forkserver.context()
    assert ctx.get_start_method() == "forkserver"
    got = _report(ctx, tmp_path / "r.json", [])
    assert got["preloaded"] == ["torch", "timm", "mlflow"]


def test_a_worker_adopts_the_environment_the_parent_has_when_it_starts(tmp_path, monkeypatch):
    monkeypatch.delenv(forkserver.METHOD_ENV, raising=False)
    ctx = forkserver.context()
    pid = _server_pid()
    monkeypatch.setenv("TLBENCH_SOMETHING_NEW", "after the forkserver started")
    ctx = forkserver.context()
    assert _server_pid() == pid  # read when used: no new forkserver for it
    got = _report(ctx, tmp_path / "r.json", ["TLBENCH_SOMETHING_NEW"], env=dict(os.environ))
    assert got["env"] == {"TLBENCH_SOMETHING_NEW": "after the forkserver started"}


def test_an_import_time_variable_that_changed_replaces_the_forkserver(tmp_path, monkeypatch):
    monkeypatch.delenv(forkserver.METHOD_ENV, raising=False)
    forkserver.context()
    pid = _server_pid()
    # huggingface_hub reads its endpoint when imported: the old forkserver's copy is stale
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:9/{tmp_path.name}")
    ctx = forkserver.context()
    assert _server_pid() not in (None, pid)
    code = "import json, huggingface_hub.constants as c\njson.dump(c.ENDPOINT, open(PATH, 'w'))"
    p = ctx.Process(target=exec, args=(f"PATH = {str(tmp_path / 'e.json')!r}\n" + code,))
    p.start()
    p.join(60)
    assert json.loads((tmp_path / "e.json").read_text()) == os.environ["HF_ENDPOINT"]


def test_spawn_on_request(monkeypatch, tmp_path):
    monkeypatch.setenv(forkserver.METHOD_ENV, "spawn")
    ctx = forkserver.context()
    assert ctx.get_start_method() == "spawn"
    assert _report(ctx, tmp_path / "r.json", [])["preloaded"] == []
    monkeypatch.setenv(forkserver.METHOD_ENV, "fork-please")  # not a choice: the safe one
    assert forkserver.method() == "spawn"


def test_import_time_variables_are_told_from_the_ones_read_when_used():
    env = {
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "2",
        "TLBENCH_CHECKPOINTS": "/x",
        "MLFLOW_TRACKING_URI": "sqlite:///x",
        "_MLFLOW_TELEMETRY_SESSION_ID": "abc",  # MLflow sets it for itself after the fork server starts
        "CUDA_VISIBLE_DEVICES": "1",  # read when CUDA starts, in the worker, after it picked its GPU
    }
    assert forkserver.imported_env(env) == {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
