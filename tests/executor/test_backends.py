"""The shared policy, run by each backend for real: sequential, worker pool and Ray.

A ``cell:`` source that another process is training is waited for in the driver (no worker slot
or Ray task held meanwhile, no second attempt once it finished), and an out-of-memory cell is
run again at half the batch in a fresh process, with ``--checkpoint-dir`` honoured throughout.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import free_port
from mlflow.entities import ViewType
from rich.console import Console

from tlbench.cells import expand
from tlbench.executor import RunOptions, execute
from tlbench.executor.runner import load_cell_data
from tlbench.spec import parse_grid
from tlbench.tracking import Tracker, tags
from tlbench.train import fit

RAY = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
BACKENDS = ["local", "pool", pytest.param("ray", marks=pytest.mark.slow)]

CHAIN = {
    "name": "chain",
    "train": {"epochs": 1, "batch_size": 32, "image_size": 8, "lr": 0.05, "seed": 0},
    "datasets": ["digits"],
    "optimizers": ["sgd"],
    "augmentations": ["none"],
    "blocks": [
        {"name": "src", "strategies": ["scratch"], "backbones": [{"name": "test_resnet", "weights": "none"}]},
        {
            "name": "dst",
            "strategies": ["finetune"],
            "backbones": [
                {
                    "name": "test_resnet",
                    "label": "from_src",
                    "weights": "cell:digits/test_resnet/scratch/sgd/none",
                }
            ],
        },
    ],
}


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    """One local Ray node shared by this module's Ray cases (stopped before other modules run)."""
    pytest.importorskip("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    port = free_port()
    subprocess.run(
        [RAY, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
         "--include-dashboard=false",
         "--object-store-memory=80000000", "--disable-usage-stats"],
        check=True, capture_output=True, env=env, timeout=120,
    )  # fmt: skip
    yield f"127.0.0.1:{port}"
    subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env, timeout=120)


def _execute(backend, cells, tracker, options, request, console):
    if backend == "ray":
        return execute(
            cells,
            tracker,
            options,
            backend="ray",
            address=request.getfixturevalue("ray_address"),
            console=console,
        )
    return execute(cells, tracker, options, workers=2 if backend == "pool" else 1, console=console)


def _attempts(tracker: Tracker, exp: str, cell) -> int:
    """Claim runs ever made for the cell (lost claims are deleted, so deleted ones count too)."""
    claims = tracker.client.get_experiment_by_name(tags.CLAIMS_EXPERIMENT)
    key = f"{exp}/{cell.id}/"
    runs = tracker.client.search_runs(
        [claims.experiment_id], filter_string=f"tags.`{tags.CLAIM}` = '{key}'", run_view_type=ViewType.ALL
    )
    return len(runs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_source_held_elsewhere_is_waited_for_in_the_driver(backend, store, tmp_path, monkeypatch, request):
    monkeypatch.setenv("TLBENCH_HEARTBEAT_S", "0.5")
    src, dst = expand(parse_grid(CHAIN))
    tracker = Tracker(store)
    exp = tracker.experiment_id("chain")
    options = RunOptions(tracker.uri, exp, device="cpu", checkpoint_dir=str(tmp_path / "ck"))
    held = tracker.claim(exp, src)  # this test is "another process" training the source
    assert held is not None
    trained: list[str] = []

    def other_process() -> None:
        deadline = time.time() + 120
        while _attempts(tracker, exp, src) < 2 and time.time() < deadline:
            time.sleep(0.2)  # until the executor has tried the source and found it held
        run = tracker.start_cell(exp, src)
        run.finish(fit(src, load_cell_data(src, None), device="cpu", reporter=run))
        trained.append(run.run_id)
        held.release()

    thread = threading.Thread(target=other_process, daemon=True)
    thread.start()
    out = io.StringIO()
    outcomes = _execute(backend, [src, dst], tracker, options, request, Console(file=out, width=200))
    thread.join(timeout=60)
    text = out.getvalue()
    assert trained, text
    first, second = outcomes
    assert (first.status, first.reason, first.run_id) == ("SKIPPED", "finished", trained[0]), text
    assert second.status == "FINISHED", text
    assert f"waiting for {src.name} (running in another process)" in text
    assert _attempts(tracker, exp, src) == 2  # one look from the executor, never a second attempt
    used = tracker.client.get_run(second.run_id).data.tags[tags.SOURCE_RUN_ID]
    assert used == trained[0]  # the dependent started from the other process's checkpoint


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_memory_runs_again_at_half_the_batch_in_a_fresh_process(
    backend, store, tmp_path, monkeypatch, request
):
    monkeypatch.setenv("TLBENCH_SIMULATE_OOM_ABOVE", "20")  # raises the real torch.cuda.OutOfMemoryError
    monkeypatch.chdir(tmp_path)  # the default checkpoint folder would be ./mlruns/checkpoints
    src, _ = expand(parse_grid(CHAIN))
    tracker = Tracker(store)
    exp = tracker.experiment_id("chain")
    ckpt = tmp_path / "shared-ckpt"
    options = RunOptions(tracker.uri, exp, device="cpu", checkpoint_dir=str(ckpt))
    (outcome,) = _execute(backend, [src], tracker, options, request, Console(file=io.StringIO()))
    assert outcome.status == "FINISHED", outcome.reason
    runs = tracker.client.search_runs([exp])
    failed = [r for r in runs if r.info.status == "FAILED"]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(failed) == 1 and failed[0].data.tags[tags.REASON].startswith("oom")
    assert len(finished) == 1 and finished[0].data.params["batch_size"] == "16"
    assert finished[0].data.params["oom_batch_size_from"] == "32"
    assert finished[0].data.tags[tags.OOM_RETRY] == "batch size halved from 32"
    assert finished[0].data.tags[tags.PID] != failed[0].data.tags[tags.PID]  # a fresh process
    if backend == "local":
        assert failed[0].data.tags[tags.PID] == str(os.getpid()) != finished[0].data.tags[tags.PID]
    assert ckpt.is_dir() and not (tmp_path / "mlruns" / "checkpoints").exists()  # --checkpoint-dir honoured
    with contextlib.suppress(FileNotFoundError):
        assert not any(ckpt.iterdir())  # a FINISHED run's checkpoint is dropped
