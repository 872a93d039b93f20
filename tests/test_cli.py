"""End to end: ``tlbench`` commands into a temporary MLflow store, read back through MLflow's API."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from tlbench.cli import main
from tlbench.tracking import tags

TRANSFER_GRID = """
name: e2e
train: {epochs: 2, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
optimizers: [sgd]
augmentations: [none]
blocks:
  - name: source
    datasets:
      - {name: synthetic, params: {classes: 4, train_per_class: 30, val_per_class: 8, test_per_class: 8, image_size: 16}}
    backbones: [{name: test_resnet, weights: none}]
    strategies: [scratch]
  - name: transfer
    datasets: [{name: digits, train: {subset: 0.2}}]
    backbones: [{name: test_resnet, weights: "cell:synthetic/test_resnet/scratch/sgd/none"}]
    strategies: [linear_probe, scratch]
"""

ARTIFACTS = {
    "cell.yaml",
    "history.csv",
    "per_class.csv",
    "learning_curves.png",
    "confusion_matrix.png",
    "checkpoint",
}


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _runs(store: str, experiment: str):
    client = MlflowClient(store)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return client, client.search_runs([exp.experiment_id], max_results=1000)


@pytest.mark.slow
def test_run_tracks_every_cell_and_resume_skips(write_grid, store, tmp_path):
    grid = write_grid(TRANSFER_GRID)
    result = _invoke("run", "--grid", str(grid), "--tracking-uri", store)
    assert result.exit_code == 0, result.output
    client, runs = _runs(store, "e2e")
    assert len(runs) == 3
    assert {r.info.status for r in runs} == {"FINISHED"}
    # every claim was released before the command returned: ended and deleted, none RUNNING
    claims = client.search_runs(
        [client.get_experiment_by_name(tags.CLAIMS_EXPERIMENT).experiment_id], run_view_type=ViewType.ALL
    )
    assert len(claims) == 3 and {(c.info.status, c.info.lifecycle_stage) for c in claims} == {
        ("FINISHED", "deleted")
    }
    by_name = {r.data.tags["tlbench.cell"]: r for r in runs}
    probe = by_name["digits-20pct/test_resnet/linear_probe/sgd/none"]
    source = by_name["synthetic/test_resnet/scratch/sgd/none"]
    assert probe.info.run_name == "digits-20pct/test_resnet/lp/sgd/none"  # short enough for the table

    # params: every axis value and training setting
    p = probe.data.params
    assert p["dataset"] == "digits-20pct" and p["strategy"] == "linear_probe" and p["subset"] == "0.2"
    assert p["backbone.weights"] == "cell:synthetic/test_resnet/scratch/sgd/none"
    assert p["epochs"] == "2" and p["lr"] == "0.05"
    # final metrics and tags
    m = probe.data.metrics
    assert {
        "test_acc",
        "test_top5",
        "best_val_acc",
        "best_epoch",
        "train_time_s",
        "params_trainable",
        "params_total",
    } <= set(m)
    assert 0 < m["params_trainable"] < m["params_total"]
    assert 0 <= m["test_acc"] <= m["test_top5"] <= 1
    assert probe.data.tags["tlbench.cell_id"] and probe.data.tags["tlbench.grid"] == "e2e"
    assert probe.data.tags["tlbench.source_run_id"] == source.info.run_id
    # per-epoch metrics with step = epoch
    history = client.get_metric_history(probe.info.run_id, "val_acc")
    assert sorted(h.step for h in history) == [0, 1]
    # artifacts
    names = {a.path for a in client.list_artifacts(probe.info.run_id)}
    assert names >= ARTIFACTS
    assert [a.path for a in client.list_artifacts(probe.info.run_id, "checkpoint")] == [
        "checkpoint/best.safetensors"
    ]
    per_class = Path(client.download_artifacts(probe.info.run_id, "per_class.csv", str(tmp_path)))
    rows = list(csv.DictReader(per_class.open()))
    assert [r["class"] for r in rows] == [str(i) for i in range(10)]
    assert sum(int(r["support"]) for r in rows) == int(p["test_size"])
    assert sum(int(r["correct"]) for r in rows) / int(p["test_size"]) == pytest.approx(m["test_acc"])
    assert p["feature_cache"] == "cached"  # a frozen probe with deterministic input trains on cached features

    # re-run: nothing trains again, no new runs
    again = _invoke("run", "--grid", str(grid), "--tracking-uri", store)
    assert again.exit_code == 0
    assert again.output.count("SKIPPED") == 3
    assert len(_runs(store, "e2e")[1]) == 3

    # --select + --force reruns only the selection (and not its finished source)
    forced = _invoke(
        "run", "--grid", str(grid), "--tracking-uri", store, "--force", "--select", "digits*/*/scratch/*"
    )
    assert forced.exit_code == 0
    runs = _runs(store, "e2e")[1]
    assert len(runs) == 4  # one new run: scratch cells have no cell: source to pull in
    assert sum(r.info.run_name == "digits-20pct/test_resnet/scratch/sgd/none" for r in runs) == 2


def test_ls_and_validate(write_grid):
    grid = write_grid(TRANSFER_GRID)
    out = _invoke("ls", "--grid", str(grid))
    assert out.exit_code == 0
    assert "3 of 3 cells" in out.output and "linear_probe" in out.output
    sel = _invoke("ls", "--grid", str(grid), "--select", "*/scratch/*")
    assert "2 of 3 cells" in sel.output
    val = _invoke("validate", "--grid", str(grid))
    assert val.exit_code == 0, val.output
    assert "is valid" in val.output


def test_bad_grid_exits_2_without_traceback(write_grid):
    grid = write_grid(TRANSFER_GRID.replace("linear_probe", "linear_prob"))
    proc = subprocess.run(
        [sys.executable, "-m", "tlbench.cli", "ls", "--grid", str(grid)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(grid) in proc.stderr and "blocks[1].strategies[0].name" in proc.stderr
    assert "did you mean 'linear_probe'" in proc.stderr


def test_failed_cell_is_recorded_and_the_grid_continues(write_grid, store):
    grid = write_grid(
        TRANSFER_GRID.replace(
            "strategies: [linear_probe, scratch]",
            "strategies: [scratch, {name: finetune, label: bad, train: {lr: 1.0e+12}}]",
        ).replace('weights: "cell:synthetic/test_resnet/scratch/sgd/none"', "weights: none")
    )
    result = _invoke("run", "--grid", str(grid), "--tracking-uri", store)
    assert result.exit_code == 1
    _, runs = _runs(store, "e2e")
    status = {r.info.run_name: r for r in runs}
    bad = status["digits-20pct/test_resnet/bad/sgd/none"]
    assert bad.info.status == "FAILED"
    assert bad.data.tags["tlbench.failure_reason"].startswith("nonfinite_loss")
    assert status["digits-20pct/test_resnet/scratch/sgd/none"].info.status == "FINISHED"
    assert "RUNNING" not in {r.info.status for r in runs}


def _start_and_wait_mid_cell(grid, store, *, stdout, _extra=(), **env):
    """`tlbench run` in a subprocess; returns it and the first run seen RUNNING after an epoch."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlbench.cli", "run", "--grid", str(grid), "--tracking-uri", store, *_extra],
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout == subprocess.PIPE else subprocess.DEVNULL,
        # a checkpoint every epoch (not every 10 s): a run seen mid-cell is interrupted mid-training
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TLBENCH_CHECKPOINT_S": "0", **env},
    )
    client = MlflowClient(store)
    deadline = time.time() + 120
    running = None
    while time.time() < deadline and running is None:
        time.sleep(0.5)
        exp = client.get_experiment_by_name("e2e")
        if exp:
            runs = client.search_runs([exp.experiment_id])
            running = next(
                (r for r in runs if r.info.status == "RUNNING" and r.data.metrics.get("val_acc") is not None),
                None,
            )
    assert running is not None, "no run started"
    return proc, running


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, extra",
    [(signal.SIGINT, []), (signal.SIGTERM, ["--workers", "2"])],
    ids=["ctrl-c", "sigterm-pool"],
)
def test_ctrl_c_marks_the_run_killed_and_the_next_run_completes(
    write_grid, store, tmp_path, monkeypatch, sig, extra
):
    grid = write_grid(TRANSFER_GRID.replace("epochs: 2", "epochs: 40"))
    monkeypatch.setenv("TLBENCH_CHECKPOINTS", str(tmp_path / "ckpt"))
    proc, running = _start_and_wait_mid_cell(grid, store, stdout=subprocess.PIPE, _extra=extra)
    client = MlflowClient(store)
    proc.send_signal(sig)  # SIGTERM reaches only the parent: it passes the interrupt to its workers
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out.decode()
    killed = client.get_run(running.info.run_id)
    assert killed.info.status == "KILLED"
    assert killed.data.tags["tlbench.failure_reason"] == "interrupted"
    assert (tmp_path / "ckpt" / running.info.run_id / "last.pt").exists()  # the last epoch is kept

    result = _invoke("run", "--grid", str(grid), "--tracking-uri", store)
    assert result.exit_code == 0, result.output
    runs = _runs(store, "e2e")[1]
    finished = [r.info.run_name for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == len(set(finished)) == 3
    assert client.get_run(running.info.run_id).info.status == "FINISHED"  # continued, not redone
    assert "RUNNING" not in {r.info.status for r in runs}


LORA_GRID = """
name: e2e
train: {epochs: 30, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
datasets:
  - {name: synthetic, params: {classes: 4, train_per_class: 30, val_per_class: 8, test_per_class: 8, image_size: 16}}
backbones: [{name: test_vit, weights: none}]
strategies: [{name: lora, params: {r: 4}}]
optimizers: [sgd]
augmentations: [basic]
"""


@pytest.mark.slow
def test_a_lora_cell_killed_by_sigterm_resumes_to_the_uninterrupted_result(
    write_grid, store, tmp_path, monkeypatch
):
    """SIGTERM mid-cell, then `tlbench run` again: the LoRA run continues from its checkpoint and
    ends with the metrics and the (merged, plain timm) weights of a run never interrupted."""
    from safetensors.torch import load_file

    grid = write_grid(LORA_GRID)
    monkeypatch.setenv("TLBENCH_CHECKPOINTS", str(tmp_path / "ckpt"))
    proc, running = _start_and_wait_mid_cell(grid, store, stdout=subprocess.PIPE)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out.decode()
    assert _invoke("run", "--grid", str(grid), "--tracking-uri", store).exit_code == 0
    clean = f"sqlite:///{tmp_path / 'clean' / 'mlflow.db'}"
    assert _invoke("run", "--grid", str(grid), "--tracking-uri", clean).exit_code == 0
    (resumed,), (whole,) = _runs(store, "e2e")[1], _runs(clean, "e2e")[1]
    assert resumed.info.run_id == running.info.run_id and resumed.data.tags.get("tlbench.resumed_from_epoch")
    keys = ("test_acc", "test_loss", "best_val_acc", "best_epoch", "params_trainable")
    assert {k: resumed.data.metrics[k] for k in keys} == {k: whole.data.metrics[k] for k in keys}
    weights = [
        load_file(
            MlflowClient(uri).download_artifacts(
                r.info.run_id, "checkpoint/best.safetensors", str(tmp_path / d)
            )
        )
        for uri, r, d in ((store, resumed, "a"), (clean, whole, "b"))
    ]
    assert not any("lora" in k for k in weights[0])
    assert all(torch.equal(v, weights[1][k]) for k, v in weights[0].items())


def test_weights_from_an_earlier_run(write_grid, store, tmp_path):
    from safetensors.torch import load_file

    src = write_grid(
        """
name: src
train: {epochs: 1, batch_size: 32, image_size: 16, lr: 0.05}
datasets: [{name: synthetic, params: {classes: 3, train_per_class: 10, val_per_class: 4, test_per_class: 4, image_size: 16}}]
backbones: [{name: test_resnet, weights: none}]
strategies: [scratch]
optimizers: [sgd]
augmentations: [none]
""",
        name="src.yaml",
    )
    assert _invoke("run", "--grid", str(src), "--tracking-uri", store).exit_code == 0
    client, (source,) = _runs(store, "src")
    target = f"""
name: tgt
train: {{epochs: 1, batch_size: 32, image_size: 16, lr: 0.05, subset: 0.1}}
datasets: [digits]
backbones:
  - {{name: test_resnet, weights: "run:{source.info.run_id}"}}
  - {{name: test_resnet, label: ghost, weights: "run:0123456789abcdef"}}
strategies: [linear_probe]
optimizers: [sgd]
augmentations: [none]
"""
    result = _invoke("run", "--grid", str(write_grid(target, name="tgt.yaml")), "--tracking-uri", store)
    assert result.exit_code == 1  # the ghost cell fails, the other finishes
    _, runs = _runs(store, "tgt")
    by_name = {r.data.tags["tlbench.cell"]: r for r in runs}
    good = by_name["digits/test_resnet/linear_probe/sgd/none"]
    assert good.info.status == "FINISHED" and good.data.tags["tlbench.source_run_id"] == source.info.run_id
    a = load_file(
        client.download_artifacts(source.info.run_id, "checkpoint/best.safetensors", str(tmp_path / "a"))
    )
    b = load_file(
        client.download_artifacts(good.info.run_id, "checkpoint/best.safetensors", str(tmp_path / "b"))
    )
    assert all(a[k].equal(b[k]) for k in a if not k.startswith("fc."))  # a probe keeps the backbone as loaded
    ghost = by_name["digits/ghost/linear_probe/sgd/none"]
    assert ghost.info.status == "FAILED" and "no such run" in ghost.data.tags["tlbench.failure_reason"]


@pytest.mark.slow
def test_a_sigkilled_run_resumes_from_its_checkpoint_into_the_same_run(
    write_grid, store, monkeypatch, tmp_path
):
    grid = write_grid(TRANSFER_GRID.replace("epochs: 2", "epochs: 40"))
    monkeypatch.setenv("TLBENCH_CHECKPOINTS", str(tmp_path / "ckpt"))
    # the default 30 s heartbeat: only the same-host rule (its PID gone) can reap it in time
    proc, running = _start_and_wait_mid_cell(grid, store, stdout=subprocess.DEVNULL)
    client = MlflowClient(store)
    proc.kill()  # SIGKILL: no handler runs, the run and its claim stay RUNNING in the store
    proc.wait(timeout=30)
    assert client.get_run(running.info.run_id).info.status == "RUNNING"
    owner = client.get_run(running.info.run_id).data.tags
    assert owner["tlbench.pid"] == str(proc.pid) and owner["tlbench.host_id"] and owner["tlbench.pid_start"]

    monkeypatch.setenv("TLBENCH_HEARTBEAT_S", "600")  # stale only after 30 min: the PID rule or nothing
    result = _invoke("run", "--grid", str(grid), "--tracking-uri", store)
    assert result.exit_code == 0, result.output
    assert "KILLED whose process is gone" in result.output
    assert "running elsewhere" not in result.output  # reaped and resumed in this one rerun
    # the killed cell resumed from its last epoch's checkpoint into the same run
    resumed = client.get_run(running.info.run_id)
    assert resumed.info.status == "FINISHED" and resumed.data.tags["tlbench.resumes"] == "1"
    assert "tlbench.failure_reason" not in resumed.data.tags
    start = int(resumed.data.tags["tlbench.resumed_from_epoch"])
    assert start >= 1  # it had done at least one epoch before the kill: not restarted from 0
    steps = sorted(m.step for m in client.get_metric_history(running.info.run_id, "val_acc"))
    assert steps == list(range(40))  # every epoch once: metrics continue, not restart
    runs = _runs(store, "e2e")[1]
    assert "RUNNING" not in {r.info.status for r in runs}
    finished = [r.info.run_name for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == len(set(finished)) == 3  # one FINISHED run per cell
    assert not (tmp_path / "ckpt" / running.info.run_id).exists()  # dropped once FINISHED


def test_a_live_run_is_not_reaped(store):
    from tlbench.cells import expand
    from tlbench.spec import parse_grid
    from tlbench.tracking import Tracker

    tracker = Tracker(store)
    exp = tracker.experiment_id("live")
    cell = expand(parse_grid(__import__("yaml").safe_load(TRANSFER_GRID)))[0]
    run = tracker.start_cell(exp, cell)
    assert tracker.reap_stale(exp) == []  # fresh heartbeat
    assert tracker.reap_stale(exp, stale_after_s=-1) == [run.run_id]  # anything older than "now" is stale
    assert tracker.client.get_run(run.run_id).info.status == "KILLED"
    run.end("KILLED")  # stops its heartbeat


def test_fit_options_reach_the_run(write_grid, store):
    """--no-feature-cache used to be dropped between the CLI and fit: the run says which path ran."""
    grid = write_grid(
        TRANSFER_GRID.replace("strategies: [linear_probe, scratch]", "strategies: [linear_probe]")
    )
    for flag, path in (("--feature-cache", "cached"), ("--no-feature-cache", "online")):
        result = _invoke("run", "--grid", str(grid), "--tracking-uri", store, "--force", flag)
        assert result.exit_code == 0, result.output
        _, runs = _runs(store, "e2e")
        probe = next(r for r in runs if "linear_probe" in r.data.tags["tlbench.cell"])  # newest first
        assert probe.data.params["feature_cache"] == path
        # the shared feature store: used with the cache, recorded (hit or extracted, and its keys)
        assert probe.data.params.get("feature_store", "off") in (
            ("hit", "extracted") if path == "cached" else ("off",)
        )
        assert ("feature_store.key" in probe.data.params) == (path == "cached")


@pytest.mark.slow
def test_two_runs_at_once_finish_every_cell_exactly_once(write_grid, store):
    grid = write_grid(
        TRANSFER_GRID.replace("epochs: 2", "epochs: 4").replace(
            "strategies: [linear_probe, scratch]", "strategies: [linear_probe, scratch, finetune, lp_ft]"
        )
    )
    cmd = [sys.executable, "-m", "tlbench.cli", "run", "--grid", str(grid), "--tracking-uri", store]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outs = [p.communicate(timeout=400)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = _runs(store, "e2e")[1]
    finished = [r.info.run_name for r in runs if r.info.status == "FINISHED"]
    assert sorted(finished) == sorted(set(finished)) and len(finished) == 5  # each cell once
    assert len(runs) == 5  # and no second run of any cell, in any state
    assert all("✓" in o for o in outs)  # both processes trained something


@pytest.mark.slow
def test_a_pool_worker_killed_mid_cell_is_replaced_and_the_cell_resumes(write_grid, store, tmp_path):
    grid = write_grid(TRANSFER_GRID.replace("epochs: 2", "epochs: 30"))
    env = {"TLBENCH_CHECKPOINTS": str(tmp_path / "ckpt"), "TLBENCH_HEARTBEAT_S": "1"}
    proc, running = _start_and_wait_mid_cell(
        grid, store, stdout=subprocess.PIPE, _extra=["--workers", "2"], **env
    )
    worker = int(running.data.tags["tlbench.pid"])
    assert worker != proc.pid  # the cell runs in a worker process, not in the parent
    os.kill(worker, signal.SIGKILL)  # like the kernel's OOM killer
    out, _ = proc.communicate(timeout=300)
    out = out.decode()
    assert proc.returncode == 0, out
    assert "worker died (killed by SIGKILL); retry 1/2" in out
    client = MlflowClient(store)
    resumed = client.get_run(running.info.run_id)
    assert resumed.info.status == "FINISHED" and resumed.data.tags["tlbench.resumes"] == "1"
    assert int(resumed.data.tags["tlbench.pid"]) != worker  # finished by the replacement worker
    steps = sorted(m.step for m in client.get_metric_history(running.info.run_id, "val_acc"))
    assert steps == list(range(30))
    runs = _runs(store, "e2e")[1]
    finished = [r.info.run_name for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == len(set(finished)) == 3 and len(runs) == 3


def test_out_of_memory_is_retried_with_half_the_batch(write_grid, store, monkeypatch):
    """CUDA OOM cannot happen on a CPU: TLBENCH_SIMULATE_OOM_ABOVE raises the real
    torch.cuda.OutOfMemoryError for batches above a size, where the training would start. One
    cell through the CLI with two workers (each retry is a fresh process, ~10 s here); the
    policy itself, every backend (in-process, pool, Ray) and the fresh process are tested in
    tests/executor/test_backends.py."""
    grid = write_grid(TRANSFER_GRID.replace("batch_size: 32", "batch_size: 64"))
    monkeypatch.setenv("TLBENCH_SIMULATE_OOM_ABOVE", "20")
    result = _invoke(
        "run", "--grid", str(grid), "--tracking-uri", store, "--workers", "2", "--select", "synthetic/*"
    )
    assert result.exit_code == 0, result.output
    runs = _runs(store, "e2e")[1]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == 1
    for r in finished:  # 64 -> 32 -> 16: two halvings, each a fresh run
        assert r.data.params["batch_size"] == "16"
        assert r.data.params["oom_batch_size_from"] == "64"  # what the grid asked for
        assert r.data.tags["tlbench.oom_retry"] == "batch size halved from 32"
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed) == 2 and all(r.data.tags["tlbench.failure_reason"].startswith("oom") for r in failed)
    assert {r.data.params["batch_size"] for r in failed} == {"64", "32"}


@pytest.mark.parametrize("grid", ["kornblith12", "fewshot", "vtab1k"])
def test_the_transfer_grids_validate_offline_with_entries_to_download(grid, tmp_path, monkeypatch):
    monkeypatch.setenv("TLBENCH_OFFLINE", "1")
    result = CliRunner().invoke(main, ["validate", "--grid", grid, "--no-build", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "to be downloaded" in result.output and "is valid" in result.output
    if grid == "kornblith12":
        assert "placed by hand" in result.output and "StanfordCars" in result.output


def test_cells_left_to_a_live_process_are_named_and_exit_3_only_on_request(write_grid, store):
    """Nothing trains: the one cell is claimed by this (live) test process, as another worker would."""
    from tlbench.cells import expand
    from tlbench.spec import load_grid
    from tlbench.tracking import Tracker

    grid = write_grid()
    tracker = Tracker(store)
    (cell,) = expand(load_grid(grid), grid)
    held = tracker.claim(tracker.experiment_id("tiny"), cell)
    assert held is not None
    try:
        plain = _invoke("run", "--grid", str(grid), "--tracking-uri", store)
        assert plain.exit_code == 0, plain.output  # concurrent workers rely on it
        assert "1 cell(s) left to other live processes" in plain.output and cell.name in plain.output
        strict = _invoke("run", "--grid", str(grid), "--tracking-uri", store, "--require-complete")
        assert strict.exit_code == 3, strict.output
    finally:
        held.release()


LBFGS_GRID = """
name: lin
train: {epochs: 3, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
seeds: 2
race: {epochs: [1]}
datasets: [{name: digits, train: {subset: 0.25}}]
backbones: [{name: test_resnet, weights: none}]
strategies:
  - linear_probe
  - {name: linear_probe, label: lbfgs, params: {solver: lbfgs, l2: [1.0e-4, 1.0e-2, 1.0, 100.0], max_iter: 10}}
optimizers: [sgd, adam]
augmentations: [none]
"""


@pytest.mark.slow
def test_an_lbfgs_probe_runs_once_as_one_rung_and_records_its_sweep(write_grid, store):
    """Under two optimizers it is one cell (one run per seed); racing gives it its only rung; its
    run holds the chosen λ, the val curve over the grid and what it ignored; tune leaves it alone."""
    grid = write_grid(LBFGS_GRID, "lin.yaml")
    result = _invoke("run", "--grid", str(grid), "--tracking-uri", store)
    assert result.exit_code == 0, result.output
    assert result.output.count("same cell as digits-25pct/test_resnet/lbfgs/sgd/none@s") == 2
    client, runs = _runs(store, "lin")
    lbfgs = [
        r for r in runs if "/lbfgs/" in r.data.tags.get(tags.CELL, "") and tags.SUMMARY not in r.data.tags
    ]
    assert sorted(r.data.tags[tags.CELL] for r in lbfgs) == [
        "digits-25pct/test_resnet/lbfgs/sgd/none@s0",
        "digits-25pct/test_resnet/lbfgs/sgd/none@s1",
    ]
    for run in lbfgs:
        p, m = run.data.params, run.data.metrics
        assert run.info.status == "FINISHED" and tags.RACE not in run.data.tags  # never paused
        assert p["probe.l2_grid"] == "0.0001,0.01,1,100" and p["probe.l2"] in p["probe.l2_grid"].split(",")
        assert p["epochs"] == "1" and "optimizer=sgd" in p["ignored"] and "lr=0.05" in p["ignored"]
        assert m["epochs_trained"] == 1 and "test_mean_per_class_acc" in m
        curve = sorted(client.get_metric_history(run.info.run_id, "probe.val_acc"), key=lambda x: x.step)
        assert [x.step for x in curve] == [0, 1, 2, 3] and m["best_val_acc"] == max(x.value for x in curve)
        assert len(client.get_metric_history(run.info.run_id, "probe.grad_norm")) == 4
        # 10 iterations cannot reach the weakest λ's optimum: said in the run, with the numbers
        assert "did not converge at l2 = 0.0001" in run.data.tags[tags.WARNINGS]
        assert m["probe.not_converged"] >= 1
    sgd = [
        r
        for r in runs
        if "/linear_probe/" in r.data.tags.get(tags.CELL, "") and tags.SUMMARY not in r.data.tags
    ]
    assert len(sgd) == 4 and all(r.data.tags.get(tags.RACE) in (None, "dropped") for r in sgd)

    tuned = _invoke(
        "tune", "--grid", str(grid), "--tracking-uri", store, "--select", "*/lbfgs/*", "--trials", "2"
    )
    assert tuned.exit_code == 0, tuned.output
    assert "not tuned" in tuned.output and "nothing to tune" in tuned.output


def test_piped_output_keeps_each_record_on_one_line(write_grid, store):
    """In a log or a pipe (no terminal), a cell's outcome is one line, never wrapped mid-record."""
    import re

    grid = write_grid()
    proc = subprocess.run(
        [sys.executable, "-m", "tlbench.cli", "run", "--grid", str(grid), "--tracking-uri", store],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "60"},
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if "✓" in ln]
    assert re.fullmatch(
        r"✓ synthetic/test_resnet/scratch/sgd/none  test_acc [\d.]+  best_val [\d.]+  [\d.]+s", line
    ), line


def _leaving(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )


def test_the_command_leaves_as_an_ordinary_exit_would_without_the_teardown(tmp_path):
    """``tlbench`` ends with ``os._exit`` (no module teardown), but only after what an ordinary
    exit does first: a non-daemon thread's work done, atexit handlers run, output flushed."""
    code = f"""
import atexit, sys, threading, time
from pathlib import Path
from tlbench.cli import leave
atexit.register(lambda: print("atexit ran"))
def slow():
    time.sleep(0.5)
    Path({str(tmp_path / "written")!r}).write_text("done")
threading.Thread(target=slow).start()
sys.stdout.write("unflushed line")
leave(3)
"""
    done = _leaving(code, tmp_path)
    assert done.returncode == 3
    assert (tmp_path / "written").read_text() == "done"
    assert "unflushed line" in done.stdout and "atexit ran" in done.stdout
    said = _leaving("from tlbench.cli import leave\nleave('one sentence')", tmp_path)
    assert (said.returncode, said.stderr.strip()) == (1, "one sentence")


def test_the_console_script_keeps_click_s_exit_codes(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "tlbench.cli", "grids"], capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0 and "smoke" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "tlbench.cli", "ls", "--grid", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "missing.yaml" in bad.stderr
