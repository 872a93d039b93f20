"""The feature store (tlbench/features, tlbench/train/features.py, `tlbench cache`): exact
features, keys that miss when the features change, one extraction per key across processes,
corrupt entries rebuilt, LRU eviction, and tuning trials served from the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
import yaml
from click.testing import CliRunner
from helpers import REPO, SYNTH, make_cell

from tlbench.cli import main
from tlbench.data import load_dataset
from tlbench.features import FeatureStore
from tlbench.train import extract_features, fit
from tlbench.train.features import open_store
from tlbench.train.setup import prepare, to_device


class Rec:
    def __init__(self):
        self.info: dict = {}

    def on_start(self, info):
        self.info = info

    def on_epoch(self, epoch, metrics):
        pass


@pytest.fixture
def root(tmp_path, monkeypatch):
    path = tmp_path / "features"
    monkeypatch.setenv("TLBENCH_FEATURE_STORE", str(path))
    return path


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", params=SYNTH, seed=0)


def _probe(**kw):
    return make_cell("linear_probe", **{"epochs": 2, "lr": 0.2, **kw})


def _fit(cell, data):
    rec = Rec()
    return fit(cell, data, reporter=rec, device="cpu"), rec.info


def _curve(result) -> list[tuple[float, float, float]]:
    return [(h["train_loss"], h["val_loss"], h["val_acc"]) for h in result.history]


def _keys(cell, data, **setup_changes) -> dict[str, str]:
    s = prepare(
        cell, data, weights_file=None, device="cpu", cache_features=True, compile=False, cudnn_benchmark=False
    )
    s = replace(s, **setup_changes)
    stored = open_store(cell, s, data, enabled=True)
    stored.close()
    return stored.keys


def test_store_serves_exactly_what_a_fresh_extraction_gives(root, data):
    cell = _probe()
    first, a = _fit(cell, data)
    second, b = _fit(cell, data)
    assert a["feature_store"] == "extracted" and b["feature_store"] == "hit"
    assert a["feature_store.key"] == b["feature_store.key"]
    assert _curve(first) == _curve(second) and first.test_acc == second.test_acc
    # the stored source split is bit-identical to extracting it anew with the cell's settings
    s = prepare(
        cell, data, weights_file=None, device="cpu", cache_features=True, compile=False, cudnn_benchmark=False
    )
    keys = dict(kv.split(":") for kv in a["feature_store.key"].split(","))
    fresh = extract_features(
        s.model,
        to_device(data.origin.train, s.device),
        s.eval_tf,
        batch_size=cell.train.eval_batch_size,
        autocast=False,
        channels_last=s.channels_last,
    )
    assert torch.equal(FeatureStore(root).get(keys["train"])["features"], fresh)
    # store off (today's per-run cache) trains to the same result
    os.environ["TLBENCH_FEATURE_STORE"] = "off"
    off, c = _fit(cell, data)
    assert "feature_store" not in c and off.test_acc == first.test_acc and _curve(off) == _curve(first)


def test_subsets_and_seeds_share_one_extraction_and_get_their_own_rows(root, data):
    _fit(_probe(), data)
    sub = load_dataset("synthetic", params=SYNTH, seed=3, subset=0.5)
    _, info = _fit(_probe(), sub)
    assert info["feature_store"] == "hit"
    s = prepare(
        _probe(),
        sub,
        weights_file=None,
        device="cpu",
        cache_features=True,
        compile=False,
        cudnn_benchmark=False,
    )
    stored = open_store(_probe(), s, sub, enabled=True)
    fresh = extract_features(s.model, s.train, s.eval_tf, batch_size=256, autocast=False, channels_last=False)
    assert torch.allclose(stored.split("train", s, 256), fresh, atol=1e-6)  # the subset's own rows


def test_anything_that_changes_the_features_changes_the_key(root, data, tmp_path):
    from tlbench.models.build import build_model
    from tlbench.models.weights import save_weights
    from tlbench.spec.schema import WeightsSpec

    base = _keys(_probe(), data)
    assert _keys(_probe(image_size=24), data)["train"] != base["train"]  # input size
    assert _keys(_probe(), data, mean=(0.4, 0.4, 0.4))["train"] != base["train"]  # normalisation
    layouts = [_keys(_probe(), data, channels_last=flag)["train"] for flag in (True, False)]
    assert layouts[0] != layouts[1]  # memory format
    assert _keys(_probe(seed=1), data)["train"] != base["train"]  # another random init
    other = load_dataset("synthetic", params={**SYNTH, "classes": 3}, seed=0)
    assert _keys(_probe(), other)["train"] != base["train"]  # another source
    # a weight file: same bytes, same key; one changed tensor, another key
    model = build_model("test_resnet", num_classes=4, weights=WeightsSpec(kind="none", value=""))
    path = tmp_path / "w.safetensors"
    save_weights(model, path)
    cell = _probe(weights=f"file:{path}")
    k1 = _keys(
        cell,
        data,
    )["train"]
    assert _keys(cell, data)["train"] == k1
    with torch.no_grad():
        model.conv1[0].weight.mul_(2)
    save_weights(model, path)
    assert _keys(cell, data)["train"] != k1


_WORKER = """
import json, sys
sys.path.insert(0, {tests!r})
from helpers import SYNTH, make_cell
from tlbench.data import load_dataset
from tlbench.train import fit
class Rec:
    def on_start(self, info): self.info = info
    def on_epoch(self, e, m): pass
rec = Rec()
fit(make_cell("linear_probe", epochs=1, lr=0.2), load_dataset("synthetic", params=SYNTH, seed=0), reporter=rec, device="cpu")
print(json.dumps(rec.info["feature_store.splits"]))
"""


def test_two_processes_asking_for_one_key_extract_it_once(root):
    code = _WORKER.format(tests=str(REPO / "tests"))
    env = {**os.environ, "TLBENCH_FEATURE_STORE": str(root), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    splits = [dict(kv.split(":") for kv in json.loads(o.strip().splitlines()[-1]).split(",")) for o in outs]
    for name in splits[0]:
        assert sorted(s[name] for s in splits) == ["extracted", "hit"], splits
    assert len(list(root.glob("*.safetensors"))) == len(splits[0])


def test_a_corrupt_entry_is_dropped_and_rebuilt(root, data):
    first, a = _fit(_probe(), data)
    keys = dict(kv.split(":") for kv in a["feature_store.key"].split(","))
    path = root / f"{keys['train']}.safetensors"
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    with pytest.warns(UserWarning, match="unreadable"):
        again, b = _fit(_probe(), data)
    assert "train:extracted" in b["feature_store.splits"] and "test:hit" in b["feature_store.splits"]
    assert again.test_acc == first.test_acc
    assert FeatureStore(root).get(keys["train"]) is not None


def test_eviction_under_a_tiny_budget_keeps_the_most_recent(tmp_path):
    store = FeatureStore(tmp_path / "fs", budget_bytes=12_000)  # two entries fit, not three
    entry = {"features": torch.zeros(100, 10), "labels": torch.zeros(100, dtype=torch.long)}  # 4.8 kB
    store.put("a", entry, {})
    store.put("b", entry, {})
    for key, age in (("a", 20), ("b", 30)):  # a used more recently than b
        os.utime(store.path(key), (time.time() - age, time.time() - age))
    store.put("c", entry, {})
    assert [e.key for e in store.entries()] == ["c", "a"]
    assert store.get("b") is None and torch.equal(store.get("a")["features"], entry["features"])


def test_tuning_trials_after_the_first_hit_the_store(root, store, tmp_path):
    from tlbench.cells import expand
    from tlbench.spec import parse_grid
    from tlbench.tracking import Tracker
    from tlbench.tune import tune_cell

    grid = yaml.safe_load(
        "name: fstune\ntrain: {epochs: 2, batch_size: 64, image_size: 16, lr: 0.01, seed: 0}\n"
        "datasets: [digits]\nbackbones: [{name: test_resnet, weights: none}]\n"
        "strategies: [linear_probe]\noptimizers: [sgd]\naugmentations: [none]\n"
    )
    cell = expand(parse_grid(grid, check_backbones=False))[0]
    tracker = Tracker(store)
    exp = tracker.experiment_id(cell.grid)
    tune_cell(
        cell,
        trials=3,
        tracker=tracker,
        experiment_id=exp,
        storage_url=str(tmp_path / "j"),
        seed=1,
        device="cpu",
    )
    runs = tracker.client.search_runs(
        [exp], "tags.`tlbench.variant` = 'trial'", order_by=["attributes.start_time ASC"]
    )
    used = [r.data.params["feature_store"] for r in runs]
    assert used == ["extracted", "hit", "hit"]


def test_cache_ls_and_clear(root, data):
    _fit(_probe(), data)
    runner = CliRunner()
    out = runner.invoke(main, ["cache", "ls"], catch_exceptions=False).output
    assert "3 entries" in out and "test_resnet" in out and "synthetic" in out
    kept = runner.invoke(main, ["cache", "clear", "--older-than", "1h"], catch_exceptions=False).output
    assert "dropped 0 entries" in kept
    gone = runner.invoke(main, ["cache", "clear"], catch_exceptions=False).output
    assert "dropped 3 entries" in gone and not list(root.glob("*.safetensors"))
