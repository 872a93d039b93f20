"""A short real ``fit`` that learns; determinism; lp_ft phases; non-finite loss; the Reporter."""

from __future__ import annotations

import pytest
import torch
from helpers import SYNTH, Recorder, StopAfter, make_cell

from tlbench.data import load_dataset
from tlbench.train import NonFiniteLossError, fit


def _cell(strategy="scratch", optimizer="sgd", **train):
    return make_cell(strategy, optimizer=optimizer, augmentation="basic", **{"epochs": 4, **train})


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", params=SYNTH, seed=0)


def test_fit_learns_above_chance_and_reports(data):
    rec = Recorder()
    result = fit(_cell(epochs=6), data, reporter=rec, device="cpu")
    chance = 1 / data.num_classes
    assert result.test_acc > chance + 0.3, result.history
    assert result.best_val_acc == max(h["val_acc"] for h in result.history)
    assert [e for e, _ in rec.epochs] == list(range(6))
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr"} <= set(rec.epochs[0][1])
    assert rec.started["params_trainable"] == rec.started["params_total"] > 0
    assert result.confusion.sum() == len(data.test)
    assert 0 < result.test_top5 <= 1 and result.test_top5 >= result.test_acc
    assert result.images_per_s > 0
    assert "fc.weight" in result.best_state and result.best_state["fc.weight"].shape[0] == data.num_classes
    assert all(v.device.type == "cpu" for v in result.best_state.values())


def test_fit_is_deterministic_on_cpu(data):
    a = fit(_cell(epochs=2), data, device="cpu")
    b = fit(_cell(epochs=2), data, device="cpu")
    assert [h["val_loss"] for h in a.history] == [h["val_loss"] for h in b.history]
    assert a.test_acc == b.test_acc


def test_lp_ft_switches_phase(data):
    rec = Recorder()
    result = fit(_cell("lp_ft", epochs=4), data, reporter=rec, device="cpu")
    assert rec.started["phases"] == "linear_probe:2,finetune:2"
    assert rec.started["params_trainable"] < rec.started["params_total"]  # phase 1 is a probe
    assert result.params_trainable == result.params_total  # phase 2 trains everything
    lrs = [m["lr"] for _, m in rec.epochs]
    assert lrs[2] < lrs[0]  # fine-tune restarts at lr * ft_lr_scale


def test_absurd_lr_stops_with_nonfinite_loss(data):
    rec = Recorder()
    with pytest.raises(NonFiniteLossError) as info:
        fit(_cell(epochs=2, lr=1e12), data, device="cpu", reporter=rec)
    assert info.value.reason == "nonfinite_loss"
    assert rec.epochs == [] and "at update" in str(info.value)  # within the first epoch, not after it


def _probe_cell(strategy="linear_probe", augmentation="none", epochs=5):
    return make_cell(strategy, augmentation=augmentation, epochs=epochs, lr=0.2)


def test_cached_probe_matches_the_online_probe(data):
    cached, online = Recorder(), Recorder()
    a = fit(_probe_cell(), data, reporter=cached, device="cpu")
    b = fit(_probe_cell(), data, reporter=online, device="cpu", cache_features=False)
    assert cached.started["feature_cache"] == "cached" and online.started["feature_cache"] == "online"
    assert a.best_val_acc == pytest.approx(b.best_val_acc, abs=0.04)
    assert a.test_acc == pytest.approx(b.test_acc, abs=0.04)
    assert a.history[-1]["train_loss"] == pytest.approx(b.history[-1]["train_loss"], rel=0.05)
    # only the head changed: the backbone is bit-identical to its initialisation in both
    assert torch.equal(a.best_state["conv1.0.weight"], b.best_state["conv1.0.weight"])


@pytest.mark.parametrize(
    ("strategy", "augmentation", "expected"),
    [
        ("linear_probe", "basic", "online"),  # random augmentation: features change every epoch
        ("finetune", "none", "online"),  # the backbone trains
        ("lp_ft", "none", "cached,online"),  # the probe phase is cached, the fine-tune is not
    ],
)
def test_feature_cache_only_when_allowed(data, strategy, augmentation, expected):
    rec = Recorder()
    fit(_probe_cell(strategy, augmentation, epochs=2), data, reporter=rec, device="cpu")
    assert rec.started["feature_cache"] == expected


@pytest.mark.parametrize("strategy, stop", [("scratch", 0), ("scratch", 2), ("lp_ft", 1), ("lp_ft", 2)])
def test_a_resumed_cell_ends_exactly_as_an_uninterrupted_one(data, tmp_path, strategy, stop):
    """Model, optimizer, schedule and RNG states all come back: on the CPU the continuation is
    bit-identical (lp_ft stops at its phase boundary, epoch 1, and inside the fine-tune)."""
    from tlbench.train.checkpoint import Checkpointer

    cell = _cell(strategy, epochs=4)
    full = fit(cell, data, device="cpu")
    ckpt = Checkpointer(tmp_path / "ck", cell.id, interval_s=0)  # every epoch: stop anywhere
    with pytest.raises(KeyboardInterrupt):
        fit(cell, data, device="cpu", checkpoint=ckpt, reporter=StopAfter(stop))
    assert torch.load(ckpt.last, weights_only=True)["epoch"] == stop + 1
    resumed = fit(cell, data, device="cpu", checkpoint=ckpt)
    assert resumed.history == [
        {**h, "epoch_time_s": r["epoch_time_s"], "epoch_images_per_s": r["epoch_images_per_s"]}
        for h, r in zip(full.history, resumed.history, strict=True)
    ]
    assert resumed.best_epoch == full.best_epoch and resumed.test_acc == full.test_acc
    for k, v in full.best_state.items():
        assert torch.equal(v, resumed.best_state[k]), k


def test_a_frozen_backbone_is_named_by_its_digest_not_saved_every_epoch(data, tmp_path):
    """A probe's checkpoint holds the head (and the digest of the backbone it sits on): smaller
    than the model; a resume checks the digest and puts the rebuilt backbone back under it."""
    from tlbench.features.keys import backbone_digest
    from tlbench.train.checkpoint import Checkpointer

    def saved(cell, folder: str = "") -> dict:
        ckpt = Checkpointer(tmp_path / (folder or cell.strategy.name), cell.id, interval_s=0)
        with pytest.raises(KeyboardInterrupt):
            fit(cell, data, device="cpu", checkpoint=ckpt, reporter=StopAfter(1))
        return torch.load(ckpt.last, weights_only=True), ckpt.last.stat().st_size, ckpt

    probe_cell = _probe_cell(epochs=4)
    (probe, probe_bytes, ckpt), (full, full_bytes, _) = (
        saved(probe_cell),
        saved(_probe_cell("finetune", epochs=4)),
    )
    assert set(probe["model"]) < set(full["model"])
    assert {k.split(".")[0] for k in probe["model"] if not k.endswith("num_batches_tracked")} == {"fc"}
    assert probe_bytes < full_bytes / 3
    assert probe["frozen"] == backbone_digest(_build_like(probe_cell, data))
    # resumed from the head-only checkpoint: bit-identical to the uninterrupted probe
    whole = fit(probe_cell, data, device="cpu")
    resumed = fit(probe_cell, data, device="cpu", checkpoint=ckpt)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in whole.history]
    assert resumed.test_acc == whole.test_acc
    for k, v in whole.best_state.items():
        assert torch.equal(v, resumed.best_state[k]), k
    # a checkpoint over another backbone is refused with a sentence, not resumed into a wrong cell
    *_, ckpt = saved(probe_cell, "tampered")
    state = torch.load(ckpt.last, weights_only=True)
    torch.save({**state, "frozen": "0" * 32}, ckpt.last)
    ckpt.prev.unlink()
    with pytest.raises(RuntimeError, match="digest"):
        fit(probe_cell, data, device="cpu", checkpoint=ckpt)


def _build_like(cell, data):
    from tlbench.train.setup import prepare

    return prepare(
        cell, data, weights_file=None, device="cpu", cache_features=True, compile=False, cudnn_benchmark=False
    ).model


def test_epochs_are_reported_only_once_checkpointed_and_small_cells_save_rarely(data, tmp_path, monkeypatch):
    """Checkpoints every TLBENCH_CHECKPOINT_S seconds and at a phase's end; each epoch reaches the
    reporter (MLflow) after a checkpoint holding it, so an epoch shown is never lost."""
    from tlbench.train.checkpoint import Checkpointer

    cell = _cell("scratch", epochs=4)
    ckpt = Checkpointer(tmp_path / "ck", cell.id, interval_s=3600)
    saves, seen = [], []
    real = ckpt.save
    monkeypatch.setattr(ckpt, "save", lambda state: (saves.append(state["epoch"]), real(state)))

    class Check:
        def on_start(self, info):
            pass

        def on_epoch(self, epoch, metrics):
            seen.append((epoch, torch.load(ckpt.last, weights_only=True)["epoch"]))

    fit(cell, data, device="cpu", checkpoint=ckpt, reporter=Check())
    assert saves == [4]  # one phase of 4 short epochs: saved once, at its end
    assert [e for e, _ in seen] == [0, 1, 2, 3] and all(done > e for e, done in seen)


def test_eval_every_validates_only_where_a_number_is_needed(data):
    """``eval_every: 3`` over 7 epochs in two phases (lp_ft: 3 + 4): val at epochs 2 (the 3rd), 2
    again as the probe's last, 5 and 6 (the last); the best epoch is one of them; training itself
    is bit-identical to validating every epoch (evaluation draws nothing at random)."""
    every = fit(_cell("lp_ft", epochs=7), data, device="cpu")
    some = fit(_cell("lp_ft", epochs=7, eval_every=3), data, device="cpu")
    validated = [int(h["epoch"]) for h in some.history if "val_acc" in h]
    assert validated == [2, 5, 6]
    assert some.best_epoch in validated and some.best_val_acc == max(
        some.history[e]["val_acc"] for e in validated
    )
    assert [h["train_loss"] for h in some.history] == [h["train_loss"] for h in every.history]
    for e in validated:
        assert some.history[e]["val_acc"] == every.history[e]["val_acc"]


def test_adapt_batchnorm_makes_the_switch_to_batch_statistics_free(data):
    """AdaBN before an LP-FT probe: with the running statistics re-estimated on the train split,
    train mode (batch statistics) computes what eval mode (running ones) did, so the probe's head
    sees the same features when fine-tuning starts."""
    import timm

    from tlbench.data import make_augment
    from tlbench.train import adapt_batchnorm

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=4)
    tf = make_augment("none", out_size=16, mean=(0.5,) * 3, std=(0.5,) * 3, train=False)
    x = tf(data.train.images, None)

    def gap() -> float:
        with torch.no_grad():
            return (model.train()(x) - model.eval()(x)).abs().max().item()

    before = gap()
    assert before > 0.1  # the initial statistics (mean 0, var 1) do not fit this data
    adapt_batchnorm(model, data.train, tf, batch_size=len(data.train), channels_last=False)
    # what is left: running variances are unbiased (n / (n-1)), batch normalisation's are not
    assert gap() < before / 50, (before, gap())
    assert model.conv1[1].momentum == 0.1  # restored after the cumulative pass
    # a trailing batch of one image (no batch statistics at a 1x1 stage) is left out, not fatal
    adapt_batchnorm(model, data.train, tf, batch_size=len(data.train) - 1, channels_last=False)


@pytest.mark.parametrize("bn", ["frozen", "train"])
def test_lp_ft_transition_with_frozen_batchnorm_keeps_the_probe(data, bn):
    """With ``bn: frozen`` and a fine-tune lr of ~0, the model after the first fine-tune epoch is
    the probe's: same val loss. With ``bn: train`` the statistics move, and so does the loss."""
    strategy = {"name": "lp_ft", "params": {"lp_epochs": 2, "ft_lr_scale": 1e-9, "bn": bn}}
    result = fit(_cell(strategy, epochs=3), data, device="cpu")
    probe, first_ft = result.history[1]["val_loss"], result.history[2]["val_loss"]
    if bn == "frozen":
        assert abs(first_ft - probe) < 1e-6, (probe, first_ft)
    else:
        assert abs(first_ft - probe) > 1e-4
