"""Optuna tuning: real studies in a journal file, real MLflow runs, real training of tiny cells."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from click.testing import CliRunner
from helpers import free_port
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tlbench.cells import expand
from tlbench.cli import main
from tlbench.spec import SpecError, parse_grid
from tlbench.tracking import Tracker
from tlbench.tracking.tags import SURPLUS_ATTR
from tlbench.tune import (
    BATCH_SIZES,
    LR_RANGES,
    TuneError,
    counted,
    is_surplus,
    open_storage,
    open_study,
    search_space,
    study_name,
    tune_cell,
)

# a frozen random backbone on digits: fast (cached features), and the lr decides everything
PROBE_GRID = """
name: tunegrid
train: {epochs: 3, batch_size: 64, image_size: 16, lr: 0.00001, seed: 0}
datasets: [digits]
backbones: [{name: test_resnet, weights: none}]
strategies: [linear_probe]
optimizers: [sgd]
augmentations: [none]
"""

# slower trials (scratch training, many epochs) to kill one mid-way
SLOW_GRID = """
name: slowtune
train: {epochs: 25, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
datasets:
  - {name: synthetic, params: {classes: 4, train_per_class: 30, val_per_class: 8, test_per_class: 8, image_size: 16}}
backbones: [{name: test_resnet, weights: none}]
strategies: [scratch]
optimizers: [sgd]
augmentations: [none]
tune: {lr: [0.01, 0.2], batch_size: [16, 32]}
"""


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _cell(text: str = PROBE_GRID):
    return expand(parse_grid(yaml.safe_load(text), check_backbones=False))[0]


def _study(cell, journal: Path) -> optuna.Study:
    return optuna.load_study(study_name=study_name(cell), storage=open_storage(str(journal)))


# --- search spaces and bad input ------------------------------------------------------------------


def test_default_ranges_follow_strategy_and_optimizer():
    probe = _cell()
    assert search_space(probe) == {"lr": LR_RANGES["head"], "batch_size": BATCH_SIZES}
    ft = _cell(PROBE_GRID.replace("[linear_probe]", "[finetune]").replace("[sgd]", "[adamw]"))
    lo, hi = search_space(ft)["lr"]
    assert (lo, hi) == pytest.approx((LR_RANGES["all"][0] * 0.01, LR_RANGES["all"][1] * 0.01))
    assert hi < search_space(probe)["lr"][1]  # a frozen backbone tolerates a higher lr


def test_tune_ranges_merge_per_entry_and_leave_the_cell_id_alone():
    text = PROBE_GRID.replace(
        "strategies: [linear_probe]",
        "tune: {lr: [0.001, 0.1], batch_size: [8, 16]}\n"
        "strategies: [{name: linear_probe, tune: {lr: [0.05, 2.0]}}]",
    )
    cell = _cell(text)
    assert search_space(cell) == {"lr": (0.05, 2.0), "batch_size": (8, 16)}  # entry wins, grid fills in
    assert cell.id == _cell().id  # the search space does not change what the cell is


@pytest.mark.parametrize(
    "tune, loc, words",
    [
        ("{lr: [0.1, 0.01]}", "strategies[0].tune.lr", "0 < low < high"),
        ("{batch_size: []}", "strategies[0].tune.batch_size", "at least one choice"),
        ("{lrr: [0.1, 1]}", "strategies[0].tune.lrr", "did you mean 'lr'"),
    ],
)
def test_bad_search_range_names_the_key(tune, loc, words):
    text = PROBE_GRID.replace("[linear_probe]", f"[{{name: linear_probe, tune: {tune}}}]")
    with pytest.raises(SpecError) as err:
        parse_grid(yaml.safe_load(text), file="g.yaml", check_backbones=False)
    assert err.value.loc == loc and words in str(err.value)


def test_bad_cli_input_is_one_clear_error(write_grid, store, tmp_path):
    grid = str(write_grid(PROBE_GRID))
    for args, words in [
        (["--trials", "0"], "0 is not in the range x>=1"),
        (["--trials", "2", "--storage", "redis://localhost/0"], "unknown storage 'redis://localhost/0'"),
        (["--trials", "2", "--storage", str(tmp_path)], "is a folder"),
        (["--trials", "2", "--pruner", "sometimes"], "'sometimes' is not one of"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "tlbench.cli", "tune", "--grid", grid, "--tracking-uri", store, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert words in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(TuneError, match="at least 1"):
        tune_cell(_cell(), trials=0, tracker=Tracker(store), experiment_id="0")


# --- studies ---------------------------------------------------------------------------------------


def test_study_beats_a_bad_default_and_run_tuned_uses_its_best(write_grid, store, tmp_path):
    grid = str(write_grid(PROBE_GRID))
    journal = tmp_path / "studies.journal"
    assert _invoke("run", "--grid", grid, "--tracking-uri", store).exit_code == 0  # lr 1e-5: useless
    result = _invoke(
        "tune",
        "--grid",
        grid,
        "--tracking-uri",
        store,
        "--storage",
        str(journal),
        "--trials",
        "6",
        "--seed",
        "0",
    )
    assert result.exit_code == 0, result.output
    cell = _cell()
    study = _study(cell, journal)
    assert len(study.trials) == 6
    best = study.best_trial

    result = _invoke("run", "--grid", grid, "--tracking-uri", store, "--storage", str(journal), "--tuned")
    assert result.exit_code == 0, result.output
    client, runs = MlflowClient(store), None
    exp = client.get_experiment_by_name("tunegrid").experiment_id
    runs = client.search_runs([exp], max_results=1000)
    plain = [r for r in runs if "tlbench.variant" not in r.data.tags]
    tuned = [r for r in runs if r.data.tags.get("tlbench.variant") == "tuned"]
    assert len(plain) == 1 and len(tuned) == 1
    assert float(tuned[0].data.params["lr"]) == pytest.approx(best.params["lr"])
    assert int(tuned[0].data.params["batch_size"]) == best.params["batch_size"]
    assert tuned[0].data.params["tuned.source"] == f"optuna study {study.study_name} trial {best.number}"
    assert tuned[0].data.tags["tlbench.cell_id"] == cell.id  # pairs with the plain run in reports
    assert tuned[0].data.metrics["best_val_acc"] == pytest.approx(best.value)  # deterministic on CPU
    assert tuned[0].data.metrics["test_acc"] > plain[0].data.metrics["test_acc"] + 0.2

    report = _invoke("report", "--grid", grid, "--tracking-uri", store, "--out", str(tmp_path / "rep"))
    assert report.exit_code == 0, report.output
    assert "tuned vs untuned" in report.output


def test_trials_are_nested_runs_with_their_state_and_the_parent_has_the_summary(store, tmp_path):
    cell = _cell()
    journal = tmp_path / "j.journal"
    tracker = Tracker(store)
    exp = tracker.experiment_id(cell.grid)
    summary = tune_cell(
        cell, trials=5, tracker=tracker, experiment_id=exp, storage_url=str(journal), seed=1, device="cpu"
    )
    study = _study(cell, journal)
    runs = tracker.client.search_runs([exp], max_results=100)
    parents = [r for r in runs if r.data.tags.get("tlbench.variant") == "study"]
    assert len(parents) == 1 and parents[0].info.run_id == summary.parent_run_id
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = {
        int(r.data.tags["optuna.trial_number"]): r
        for r in runs
        if r.data.tags.get("tlbench.variant") == "trial"
    }
    assert sorted(children) == [t.number for t in study.trials]
    for t in study.trials:
        run = children[t.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["optuna.trial_state"] == t.state.name
        assert float(run.data.params["lr"]) == pytest.approx(t.params["lr"])
        epochs = tracker.client.get_metric_history(run.info.run_id, "val_acc")
        assert len(epochs) == (3 if t.state == TrialState.COMPLETE else len(t.intermediate_values))
        assert t.user_attrs["mlflow_run_id"] == run.info.run_id
    assert parent.data.metrics["best_val_acc"] == pytest.approx(study.best_value)
    assert json.loads(parent.data.tags["optuna.best_params"]) == study.best_params
    arts = {a.path for a in tracker.client.list_artifacts(parent.info.run_id)}
    assert {"best_params.json", "trials.csv", "optimization_history.png", "slice.png"} <= arts
    assert "RUNNING" not in {r.info.status for r in runs}


def test_the_median_pruner_stops_hopeless_trials(store, tmp_path):
    cell = _cell(PROBE_GRID + "tune: {lr: [1.0e-6, 1.0]}\n")
    journal = tmp_path / "j.journal"
    study, _ = open_study(cell, open_storage(str(journal)))
    for lr in (0.5, 0.6, 0.7, 1e-6, 2e-6):  # three good trials set the median, then two hopeless ones
        study.enqueue_trial({"lr": lr, "batch_size": 64})
    tracker = Tracker(store)
    tune_cell(
        cell,
        trials=5,
        tracker=tracker,
        experiment_id=tracker.experiment_id(cell.grid),
        storage_url=str(journal),
    )
    states = [t.state for t in _study(cell, journal).trials]
    assert states[:3] == [TrialState.COMPLETE] * 3
    assert states[3:] == [TrialState.PRUNED] * 2
    pruned = _study(cell, journal).trials[3]
    assert len(pruned.intermediate_values) < cell.train.epochs  # stopped early, not after the fact


def test_no_trial_beyond_n_while_others_hold_the_last_slots(store, tmp_path):
    cell = _cell()
    journal = tmp_path / "j.journal"
    study, _ = open_study(cell, open_storage(str(journal)))
    others = [study.ask() for _ in range(2)]  # two live trials of "another process"
    for t in others:
        t.set_user_attr("tlbench.heartbeat", time.time())
    tracker = Tracker(store)
    tune_cell(
        cell,
        trials=2,
        tracker=tracker,
        experiment_id=tracker.experiment_id(cell.grid),
        storage_url=str(journal),
    )
    assert [t.state for t in _study(cell, journal).trials] == [TrialState.RUNNING] * 2  # nothing added
    # the race: a third trial asked after both slots went is surplus, recorded as such, never run
    third = study.ask()
    assert is_surplus(study, third.number, 2)
    third.set_user_attr(SURPLUS_ATTR, True)
    study.tell(third, state=TrialState.FAIL)
    assert len(counted(study.get_trials())) == 2


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["journal", "postgresql"])
def test_two_processes_share_one_study_and_run_exactly_n_trials(
    write_grid, store, tmp_path, backend, request
):
    grid = str(write_grid(PROBE_GRID))
    if backend == "journal":
        journal = str(tmp_path / "shared.journal")
    else:  # a real PostgreSQL server, as several machines would share
        journal = request.getfixturevalue("postgres_url")
    cmd = [sys.executable, "-m", "tlbench.cli", "tune", "--grid", grid, "--tracking-uri", store]
    cmd += ["--storage", journal, "--trials", "8", "--pruner", "none"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    cell = _cell()
    study = optuna.load_study(study_name=study_name(cell), storage=open_storage(journal))
    trials = counted(study.get_trials())
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all("trial " in o for o in outs)  # both processes ran trials
    runs = MlflowClient(store).search_runs(
        [MlflowClient(store).get_experiment_by_name("tunegrid").experiment_id]
    )
    trial_runs = [r for r in runs if r.data.tags.get("tlbench.variant") == "trial"]
    assert len(trial_runs) == 8 and {r.info.status for r in trial_runs} == {"FINISHED"}
    assert len([r for r in runs if r.data.tags.get("tlbench.variant") == "study"]) == 1


@pytest.mark.slow
def test_a_killed_study_resumes_to_n_and_retries_the_dead_trial(write_grid, store, tmp_path, monkeypatch):
    grid = str(write_grid(SLOW_GRID))
    journal = str(tmp_path / "j.journal")
    cell = _cell(SLOW_GRID)
    args = ["tune", "--grid", grid, "--tracking-uri", store, "--storage", journal, "--trials", "3"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlbench.cli", *args, "--pruner", "none"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TLBENCH_HEARTBEAT_S": "0.5"},
    )
    victim = None
    deadline = time.time() + 180
    while victim is None and time.time() < deadline:
        time.sleep(0.3)
        try:
            trials = _study(cell, Path(journal)).get_trials()
        except (KeyError, FileNotFoundError, ValueError):
            continue
        victim = next(
            (t for t in trials if t.state == TrialState.RUNNING and len(t.intermediate_values) >= 2), None
        )
    assert victim is not None, "no trial got going"
    proc.kill()  # SIGKILL: the trial stays RUNNING in the study, its MLflow run RUNNING
    proc.wait(timeout=30)
    assert _study(cell, Path(journal)).trials[victim.number].state == TrialState.RUNNING

    monkeypatch.setenv("TLBENCH_HEARTBEAT_S", "0.5")  # stale after 4 s without a beat
    time.sleep(5)
    result = _invoke(*args, "--pruner", "none")
    assert result.exit_code == 0, result.output
    trials = _study(cell, Path(journal)).get_trials()
    assert trials[victim.number].state == TrialState.FAIL
    retry = [t for t in trials if t.user_attrs.get("tlbench.retry_of") == victim.number]
    assert len(retry) == 1 and retry[0].params == victim.params and retry[0].state == TrialState.COMPLETE
    assert len(counted(trials)) == 3 and all(t.state == TrialState.COMPLETE for t in counted(trials))
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("slowtune").experiment_id])
    assert "RUNNING" not in {r.info.status for r in runs}
    dead = client.get_run(victim.user_attrs["mlflow_run_id"])
    assert dead.info.status == "KILLED"
    assert [r.info.status for r in runs if r.data.tags.get("tlbench.variant") == "study"] == ["FINISHED"]


@pytest.mark.slow
def test_dashboard_serves_the_studies_on_loopback(store, tmp_path, services):
    cell = _cell()
    journal = tmp_path / "j.journal"
    open_study(cell, open_storage(str(journal)))
    port = free_port()
    proc = services.start(
        [sys.executable, "-m", "tlbench.cli", "dashboard", "--storage", str(journal), "--port", str(port)]
    )
    body = services.wait_http(f"http://127.0.0.1:{port}/api/studies", proc, 60)
    assert study_name(cell) in body


@pytest.mark.slow
def test_tune_workers_share_the_study_between_processes(write_grid, store, tmp_path):
    # trials of a few seconds (fine-tuning, not a cached probe): the helper process needs its
    # imports before its first trial, and with sub-second trials the first process could run all 8
    text = PROBE_GRID.replace("linear_probe", "finetune").replace("epochs: 3", "epochs: 4")
    grid = str(write_grid(text))
    journal = str(tmp_path / "j.journal")
    # a subprocess, so that both processes start cold (in-process, the first one would be done
    # with all trials before its helper has imported torch)
    result = subprocess.run(
        [sys.executable, "-m", "tlbench.cli", "tune", "--grid", grid, "--tracking-uri", store,
         "--storage", journal, "--trials", "8", "--pruner", "none", "--workers", "2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "2 tuning processes share each study" in output
    trials = counted(_study(_cell(text), Path(journal)).get_trials())
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("tunegrid").experiment_id])
    trial_runs = [r for r in runs if r.data.tags.get("tlbench.variant") == "trial"]
    assert len(trial_runs) == 8
    assert len({r.data.tags["tlbench.pid"] for r in trial_runs}) == 2  # both processes trained trials
    assert "complete" in output and "8" in output


def test_studies_have_readable_names_and_old_ones_are_still_found(tmp_path):
    """optuna-dashboard lists GRID/CELL [id] with the axis values; a study made under the old
    name (tlbench-<id>) is continued by `tune` and read by `run --tuned`; nothing trains."""
    from tlbench.tune import best_params
    from tlbench.tune.budget import legacy_study_name

    storage = open_storage(str(tmp_path / "optuna.journal"))
    cell = _cell()
    study, created = open_study(cell, storage)
    assert created and study.study_name == f"tunegrid/{cell.name} [{cell.id}]"
    attrs = study.user_attrs
    assert attrs["strategy"] == "linear_probe" and attrs["dataset"] == "digits"
    assert attrs["tlbench.cell"] == cell.name and attrs["tlbench.config_id"] == cell.id

    old_cell = _cell(PROBE_GRID.replace("seed: 0", "seed: 1"))  # another cell, tuned before #16
    legacy = optuna.create_study(
        study_name=legacy_study_name(old_cell), storage=storage, direction="maximize"
    )
    legacy.add_trial(
        optuna.trial.create_trial(
            params={"lr": 0.1, "batch_size": 64},
            distributions={
                "lr": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True),
                "batch_size": optuna.distributions.CategoricalDistribution([32, 64]),
            },
            value=0.9,
        )
    )
    found, created = open_study(old_cell, storage)
    assert not created and found.study_name == f"tlbench-{old_cell.id}"  # continued, not a new study
    best = best_params(old_cell, str(tmp_path / "optuna.journal"))
    assert best is not None and best["lr"] == 0.1 and best["study"] == f"tlbench-{old_cell.id}"


def test_a_lora_cell_is_tuned_in_its_own_range(store, tmp_path):
    """A parameter-efficient strategy tunes like any other: its default lr range, real trials of
    the LoRA cell (adapters injected in each), the best trial's lr in the study."""
    cell = _cell(
        PROBE_GRID.replace("[linear_probe]", "[{name: lora, params: {r: 2}}]")
        .replace("test_resnet, weights: none", "test_vit, weights: none")
        .replace("epochs: 3", "epochs: 2")
    )
    assert search_space(cell)["lr"] == LR_RANGES["lora"]
    journal = tmp_path / "j.journal"
    tracker = Tracker(store)
    exp = tracker.experiment_id(cell.grid)
    tune_cell(
        cell, trials=2, tracker=tracker, experiment_id=exp, storage_url=str(journal), seed=1, device="cpu"
    )
    study = _study(cell, journal)
    assert len(study.trials) == 2 and study.best_trial.state == TrialState.COMPLETE
    lo, hi = LR_RANGES["lora"]
    assert all(lo <= t.params["lr"] <= hi for t in study.trials)
    trials = [r for r in tracker.client.search_runs([exp]) if r.data.tags.get("tlbench.variant") == "trial"]
    assert trials and all(
        r.data.params["lora.layers"] == str(4 * 6) for r in trials
    )  # test_vit: 6 blocks × 4
