"""Stacked probe heads (issue #28): which cells stack, and every stacked cell ends as it would alone.

On the CPU a head trained in a stack is bit-identical to its cell trained alone; the tests hold
every logged metric to 1e-5 (what the issue promises) and the accuracies to equality. Timings
are each head's share of the stack's, so they are left out of the comparisons.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner
from helpers import SYNTH, make_cell
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from tlbench.cells import expand
from tlbench.cli import main
from tlbench.data import load_dataset
from tlbench.executor import RunOptions
from tlbench.executor.policy import Schedule
from tlbench.executor.stacking import stack_key
from tlbench.models.build import build_model
from tlbench.models.weights import save_weights
from tlbench.spec import WeightsSpec, parse_grid
from tlbench.tracking import Tracker, tags
from tlbench.train import NonFiniteLossError, fit
from tlbench.train.checkpoint import Checkpointer
from tlbench.train.stacked import Member, Unstackable, fit_stack

TOL = 1e-5
# each head's share of the stack's time, not the time it took alone
TIMED = {"train_time_s", "images_per_s", "device_s", "epoch_time_s", "epoch_images_per_s", "peak_rss_mb"}


class Rec:
    def __init__(self):
        self.info: dict = {}
        self.epochs: list[tuple[int, dict]] = []

    def on_start(self, info):
        self.info = info

    def on_epoch(self, epoch, metrics):
        self.epochs.append((epoch, metrics))


class InterruptAt(Rec):
    """Ctrl-C as this head reports ``epoch`` (after its checkpoint: the heads after it in the
    stack have not saved that epoch yet)."""

    def __init__(self, epoch):
        super().__init__()
        self.at = epoch

    def on_epoch(self, epoch, metrics):
        super().on_epoch(epoch, metrics)
        if epoch == self.at:
            raise KeyboardInterrupt


@pytest.fixture(autouse=True)
def feature_store(tmp_path, monkeypatch):
    monkeypatch.setenv("TLBENCH_FEATURE_STORE", str(tmp_path / "features"))
    monkeypatch.setenv("TLBENCH_CHECKPOINT_S", "0")  # every epoch: resume is tested epoch by epoch


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A pretrained stand-in: one random init saved as a file, the same backbone for every seed."""
    path = tmp_path_factory.mktemp("w") / "backbone.safetensors"
    torch.manual_seed(1234)  # not any cell's own random init
    save_weights(build_model("test_resnet", num_classes=4, weights=WeightsSpec(kind="none", value="")), path)
    return f"file:{path}"


@pytest.fixture(scope="module")
def data():
    return {seed: load_dataset("synthetic", params=SYNTH, seed=seed) for seed in (0, 1)}


HEADS = [  # (optimizer, lr, weight decay, label smoothing): every way a stack's heads may differ
    ("sgd", 0.2, 0.0, 0.0),
    ("sgd", 0.05, 5e-4, 0.1),
    ({"name": "sgd", "params": {"nesterov": True}}, 0.1, 0.0, 0.0),
    ("adamw", 0.01, 0.05, 0.0),
    ("adam", 0.003, 1e-4, 0.0),
]


def _probes(weights, epochs=3, seeds=(0, 1)):
    return [
        make_cell(
            "linear_probe",
            weights=weights,
            optimizer=opt,
            lr=lr,
            weight_decay=wd,
            label_smoothing=ls,
            seed=seed,
            epochs=epochs,
            schedule="cosine",
            warmup_epochs=1,
        )
        for seed in seeds
        for opt, lr, wd, ls in HEADS
    ]


def _alone(cell, data, ckpt=None):
    rec = Rec()
    return fit(cell, data[cell.train.seed], reporter=rec, device="cpu", checkpoint=ckpt), rec


def _assert_same(alone, stacked):
    """Every epoch's metrics and every final metric within 1e-5, the accuracies equal, the same
    best weights."""
    (res_a, rec_a), (res_s, rec_s) = alone, stacked
    assert [e for e, _ in rec_a.epochs] == [e for e, _ in rec_s.epochs]
    for (_, a), (_, s) in zip(rec_a.epochs, rec_s.epochs, strict=True):
        assert a.keys() == s.keys()
        for k in a.keys() - TIMED:
            assert abs(a[k] - s[k]) <= TOL, k
            if "acc" in k:
                assert a[k] == s[k], k
    fa, fs = res_a.final_metrics(), res_s.final_metrics()
    assert fa.keys() == fs.keys()
    for k in fa.keys() - TIMED:
        assert abs(fa[k] - fs[k]) <= TOL, k
    assert (res_a.test_acc, res_a.best_epoch) == (res_s.test_acc, res_s.best_epoch)
    assert list(res_a.best_state) == list(res_s.best_state)
    for k, v in res_a.best_state.items():
        assert torch.allclose(v.float(), res_s.best_state[k].float(), atol=TOL, rtol=0), k


# which cells stack ------------------------------------------------------------------------------


def test_probes_that_differ_only_in_how_the_head_trains_share_a_stack_key(weights):
    keys = {stack_key(c) for c in _probes(weights)}
    assert len(keys) == 1 and None not in keys
    # a random init is another backbone for each seed
    assert stack_key(make_cell("linear_probe", seed=0)) != stack_key(make_cell("linear_probe", seed=1))
    key = stack_key(make_cell("linear_probe", weights=weights))
    for other in (
        make_cell("linear_probe", weights=weights, batch_size=16),  # not in lockstep
        make_cell("linear_probe", weights=weights, epochs=3),
        make_cell("linear_probe", weights=weights, image_size=24),  # other features
        make_cell("linear_probe", weights=weights, subset=0.5),
        make_cell(
            "linear_probe", weights=weights, dataset={"name": "synthetic", "params": {**SYNTH, "classes": 3}}
        ),
    ):
        assert stack_key(other) not in (None, key)


@pytest.mark.parametrize(
    "cell",
    [
        lambda w: make_cell("finetune", weights=w),
        lambda w: make_cell("lp_ft", weights=w),
        lambda w: make_cell({"name": "linear_probe", "params": {"solver": "lbfgs"}}, weights=w),
        lambda w: make_cell("linear_probe", weights=w, augmentation="basic"),  # features change every epoch
        lambda w: make_cell("linear_probe", weights=w, head={"type": "linear", "dropout": 0.2}),
    ],
    ids=["finetune", "lp_ft", "lbfgs", "random-augmentation", "dropout-head"],
)
def test_cells_that_train_more_than_a_deterministic_head_train_alone(weights, cell):
    assert stack_key(cell(weights)) is None


def test_the_schedule_hands_out_a_group_split_between_the_free_workers(store, weights):
    grid = parse_grid(
        {
            "name": "g",
            "train": {"epochs": 2, "batch_size": 32, "image_size": 16, "seed": 0},
            "seeds": 2,
            "datasets": [{"name": "synthetic", "params": SYNTH}],
            "backbones": [{"name": "test_resnet", "weights": weights}],
            "strategies": ["linear_probe", "finetune"],
            "optimizers": ["sgd", "adamw", {"name": "sgd", "label": "slow", "train": {"lr": 0.001}}],
            "augmentations": ["none"],
        }
    )
    cells = expand(grid)
    tracker = Tracker(store)
    said: list[str] = []
    opts = RunOptions(tracker.uri, tracker.experiment_id("g"))
    schedule = Schedule(cells, tracker, opts, said.append)
    first = schedule.next_stack(share=2)
    assert len(first) == 3 and {t.cell.strategy.name for t in first} == {"linear_probe"}
    assert said == ["stacked 3 probe heads on test_resnet/synthetic"]
    # one worker free: the fine-tunes (seed 0 of every configuration first) alone, the rest of the
    # probes as one stack
    rest = [schedule.next_stack(share=1) for _ in range(7)]
    assert [len(s) for s in rest] == [1, 1, 1, 3, 1, 1, 1] and not schedule.next_stack()
    assert {t.cell.strategy.name for t in rest[3]} == {"linear_probe"}
    off = Schedule(cells, tracker, RunOptions(tracker.uri, opts.experiment_id, stack=False), said.append)
    assert len(off.next_stack()) == 1


# a stack ends each head as its cell alone ----------------------------------------------------------


def test_a_stack_ends_every_head_exactly_as_its_cell_alone(weights, data):
    cells = _probes(weights)
    alone = [_alone(c, data) for c in cells]
    recs = [Rec() for _ in cells]
    results = fit_stack(
        [Member(c, data[c.train.seed], r) for c, r in zip(cells, recs, strict=True)], device="cpu"
    )
    for a, res, rec, cell in zip(alone, results, recs, cells, strict=True):
        assert not isinstance(res, BaseException), res
        _assert_same(a, (res, rec))
        assert rec.info["stacked_heads"] == len(cells)
        assert {k: v for k, v in rec.info.items() if k not in ("stacked_heads", "env.threads")}.keys() <= set(
            a[1].info
        ) | {"feature_store", "feature_store.splits", "feature_store.key"}
        assert cell.train.seed == 0 or res.test_acc >= 0  # both seeds trained
    # the shared time is split: the heads' train_time_s add up to about the stack's, not 10x it
    assert sum(r.train_time_s for r in results) < 2 * sum(a[0].train_time_s for a in alone)


def test_heads_validated_every_other_epoch_end_as_alone(weights, data):
    from tlbench.spec import TrainConfig

    if "eval_every" not in TrainConfig.model_fields:
        pytest.skip("train.eval_every is not in this version")
    cells = [
        make_cell("linear_probe", weights=weights, optimizer=o, lr=lr, epochs=5, eval_every=2, seed=s)
        for o, lr in (("sgd", 0.2), ("adamw", 0.01))
        for s in (0, 1)
    ]
    recs = [Rec() for _ in cells]
    out = fit_stack(
        [Member(c, data[c.train.seed], r) for c, r in zip(cells, recs, strict=True)], device="cpu"
    )
    for cell, res, rec in zip(cells, out, recs, strict=True):
        alone = _alone(cell, data)
        _assert_same(alone, (res, rec))
        assert [("val_acc" in m) for _, m in rec.epochs] == [False, True, False, True, True]


def test_a_diverging_head_fails_on_its_own_and_the_others_are_unchanged(weights, data):
    good = _probes(weights, seeds=(0,))[:2]
    bad = [  # losses that turn non-finite at different steps
        make_cell("linear_probe", weights=weights, lr=1e37, epochs=3),
        make_cell("linear_probe", weights=weights, lr=1e37, epochs=3, schedule="cosine", warmup_epochs=1),
    ]
    cells = [good[0], bad[0], good[1], bad[1]]
    recs = [Rec() for _ in cells]
    out = fit_stack([Member(c, data[0], r) for c, r in zip(cells, recs, strict=True)], device="cpu")
    for cell, failed in ((bad[0], out[1]), (bad[1], out[3])):
        with pytest.raises(NonFiniteLossError) as alone:
            fit(cell, data[0], device="cpu")
        assert type(failed) is NonFiniteLossError and str(failed) == str(alone.value)  # the same step
    assert "non-finite at update" in str(out[1])
    _assert_same(_alone(good[0], data), (out[0], recs[0]))
    _assert_same(_alone(good[1], data), (out[2], recs[2]))


def test_a_cell_whose_features_differ_is_left_to_train_alone(weights, data):
    cells = [*_probes(weights, seeds=(0,))[:2], make_cell("linear_probe", epochs=3)]  # a random init
    out = fit_stack([Member(c, data[0], Rec()) for c in cells], device="cpu")
    assert isinstance(out[2], Unstackable) and "features differ" in str(out[2])
    assert not isinstance(out[0], BaseException) and not isinstance(out[1], BaseException)


def test_an_interrupted_stack_resumes_stacked_or_alone_to_the_same_results(weights, data, tmp_path):
    cells = _probes(weights, epochs=4)
    whole = [_alone(c, data) for c in cells]
    ckpts = [Checkpointer(tmp_path / f"ck{i}", c.id) for i, c in enumerate(cells)]
    recs = [InterruptAt(1) if i == 4 else Rec() for i in range(len(cells))]
    with pytest.raises(KeyboardInterrupt):  # after head 4 saved epoch 1; heads 5.. saved epoch 0 only
        fit_stack([Member(c, data[c.train.seed], r, k) for c, r, k in zip(cells, recs, ckpts, strict=True)])
    epochs = [k.load()["epoch"] for k in ckpts]
    assert epochs[:5] == [2] * 5 and epochs[5:] == [1] * 5  # two parts: resumed as two stacks
    # half resume as one stack (both parts of it), the other half each alone
    again = [Rec() for _ in cells]
    stacked = fit_stack(
        [Member(c, data[c.train.seed], again[i], ckpts[i]) for i, c in enumerate(cells) if i % 2 == 0]
    )
    for i, res in zip(range(0, len(cells), 2), stacked, strict=True):
        rec = recs[i]
        rec.epochs += again[i].epochs
        _assert_same(whole[i], (res, rec))
        assert again[i].info["resumed_from_epoch"] == epochs[i]
    for i in range(1, len(cells), 2):
        res, rec = _alone(cells[i], data, ckpts[i])
        rec.epochs = recs[i].epochs + rec.epochs
        _assert_same(whole[i], (res, rec))


def test_cells_interrupted_alone_resume_in_a_stack_to_the_same_results(weights, data, tmp_path):
    cells = _probes(weights, epochs=4, seeds=(0,))[:3]
    whole = [_alone(c, data) for c in cells]
    ckpts = [Checkpointer(tmp_path / f"ck{i}", c.id) for i, c in enumerate(cells)]
    recs = []
    for cell, ckpt, at in zip(cells, ckpts, (0, 2, 2), strict=True):  # two epochs done, or three
        rec = InterruptAt(at)
        with pytest.raises(KeyboardInterrupt):
            fit(cell, data[0], reporter=rec, device="cpu", checkpoint=ckpt)
        recs.append(rec)
    again = [Rec() for _ in cells]
    out = fit_stack([Member(c, data[0], r, k) for c, r, k in zip(cells, again, ckpts, strict=True)])
    for a, res, rec, more in zip(whole, out, recs, again, strict=True):
        rec.epochs += more.epochs
        _assert_same(a, (res, rec))


# tlbench run: a stack of runs ------------------------------------------------------------------------

GRID = """
name: e2e
train: {{epochs: {epochs}, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}}
augmentations: [none]
blocks:
  - name: source
    datasets:
      - {{name: synthetic, params: {{classes: 4, train_per_class: 30, val_per_class: 8, test_per_class: 8, image_size: 16}}}}
    backbones: [{{name: test_resnet, weights: none}}]
    strategies: [scratch]
    optimizers: [sgd]
    train: {{epochs: 2}}
  - name: transfer
    seeds: 2
    train: {{lr: 0.5}}
    datasets: [{{name: digits, train: {{subset: 0.2}}}}]
    backbones: [{{name: test_resnet, weights: "cell:synthetic/test_resnet/scratch/sgd/none"}}]
    strategies: [linear_probe]
    optimizers:
      - sgd
      - {{name: sgd, label: sgd-wd, train: {{lr: 1.0, weight_decay: 0.001}}}}
      - {{name: adamw, train: {{lr: 0.03, weight_decay: 0.05}}}}
"""


def _run(*args):
    return CliRunner().invoke(main, ["run", *args], catch_exceptions=False)


def _cell_runs(uri):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], max_results=1000, run_view_type=ViewType.ALL)
    return client, {r.data.tags[tags.CELL]: r for r in runs if r.data.tags.get(tags.CELL_ID)}


def _logged(client, run) -> dict[str, list[tuple[int, float]]]:
    """Every metric the run logged, step by step (timings and system metrics left out)."""
    keys = [k for k in run.data.metrics if k not in TIMED and not k.startswith(("time.", "system/"))]
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)) for k in keys}


def _assert_runs_equal(uri_a, uri_b):
    (ca, a), (cb, b) = _cell_runs(uri_a), _cell_runs(uri_b)
    assert a.keys() == b.keys()
    for name in a:
        la, lb = _logged(ca, a[name]), _logged(cb, b[name])
        assert la.keys() == lb.keys(), name
        for k, points in la.items():
            assert [s for s, _ in points] == [s for s, _ in lb[k]], (name, k)
            for (_, va), (_, vb) in zip(points, lb[k], strict=True):
                assert abs(va - vb) <= TOL and ("acc" not in k or va == vb), (name, k, va, vb)


def test_tlbench_run_stacks_probe_cells_each_into_its_own_run(write_grid, tmp_path):
    grid = write_grid(GRID.format(epochs=3))
    stacked, alone = (f"sqlite:///{tmp_path / d / 'mlflow.db'}" for d in ("stacked", "alone"))
    out = _run("--grid", str(grid), "--tracking-uri", stacked)
    assert out.exit_code == 0, out.output
    assert out.output.count("stacked 6 probe heads on test_resnet/digits-20pct") == 1
    assert _run("--grid", str(grid), "--tracking-uri", alone, "--no-stack").exit_code == 0
    _assert_runs_equal(stacked, alone)
    client, runs = _cell_runs(stacked)
    probes = [r for name, r in runs.items() if "linear_probe" in name]
    assert len(probes) == 6 and len({r.info.run_id for r in probes}) == 6
    source = runs["synthetic/test_resnet/scratch/sgd/none"].info.run_id
    for r in probes:  # its own id, params, source, checkpoint; FINISHED once
        assert r.info.status == "FINISHED" and r.data.params["stacked_heads"] == "6"
        assert r.data.tags[tags.SOURCE_RUN_ID] == source
        assert r.data.params["optimizer"] in ("sgd", "sgd-wd", "adamw")
        assert [a.path for a in client.list_artifacts(r.info.run_id, "checkpoint")] == [
            "checkpoint/best.safetensors"
        ]
    claims = client.search_runs(
        [client.get_experiment_by_name(tags.CLAIMS_EXPERIMENT).experiment_id], run_view_type=ViewType.ALL
    )
    assert len(claims) == 7 and {c.info.lifecycle_stage for c in claims} == {"deleted"}
    again = _run("--grid", str(grid), "--tracking-uri", stacked)  # finished: nothing trains twice
    assert again.exit_code == 0 and "probe heads" not in again.output and len(_cell_runs(stacked)[1]) == 7


@pytest.mark.slow
def test_a_sigkilled_stack_resumes_every_run_once_to_the_uninterrupted_results(
    write_grid, tmp_path, monkeypatch
):
    """SIGKILL mid-stack: every run of it is left RUNNING with its checkpoint; the next run (a
    pool of 2, the stack split between its workers) reaps and continues each into the same run."""
    grid = write_grid(GRID.format(epochs=40))
    uri, clean = (f"sqlite:///{tmp_path / d / 'mlflow.db'}" for d in ("killed", "clean"))
    monkeypatch.setenv("TLBENCH_CHECKPOINTS", str(tmp_path / "ckpt"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlbench.cli", "run", "--grid", str(grid), "--tracking-uri", uri],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    client, deadline = MlflowClient(uri), time.time() + 180
    mid: list = []
    while time.time() < deadline and len(mid) < 6:
        time.sleep(0.5)
        exp = client.get_experiment_by_name("e2e")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        mid = [r for r in runs if r.info.status == "RUNNING" and r.data.metrics.get("val_acc") is not None]
    assert len(mid) == 6, "the stack did not start"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed = {r.info.run_id for r in mid}
    assert all((tmp_path / "ckpt" / run_id / "last.pt").exists() for run_id in killed)

    result = _run("--grid", str(grid), "--tracking-uri", uri, "--workers", "2")
    assert result.exit_code == 0, result.output
    assert result.output.count("stacked 3 probe heads on") == 2  # one stack per worker
    _, runs = _cell_runs(uri)
    assert sorted(r.info.status for r in runs.values()) == ["FINISHED"] * 7  # each cell one run, FINISHED
    for r in runs.values():
        if r.info.run_id in killed:
            assert int(r.data.tags["tlbench.resumed_from_epoch"]) >= 1  # continued, not restarted
            steps = sorted(m.step for m in client.get_metric_history(r.info.run_id, "val_acc"))
            assert steps == list(range(40))  # every epoch once
    assert {r.info.run_id for r in runs.values()} >= killed
    assert _run("--grid", str(grid), "--tracking-uri", clean, "--no-stack").exit_code == 0
    _assert_runs_equal(uri, clean)
