"""A full disk ends in one sentence (the folder, the bytes needed and free, what to do), leaves no
half-written file behind and keeps the last good checkpoint: on real, small tmpfs mounts."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import SYNTH, make_cell
from mlflow.tracking import MlflowClient

from tlbench.cli import main
from tlbench.data import load_dataset
from tlbench.data.cache import cache_path, read_cache, write_cache
from tlbench.diskspace import DiskFullError, is_disk_full, state_nbytes, writing
from tlbench.errors import TlbenchError
from tlbench.features import FeatureStore
from tlbench.tracking import tags
from tlbench.train import fit
from tlbench.train.checkpoint import Checkpointer

PAGE = 4096  # tmpfs counts whole pages: a file of n bytes takes ceil(n / PAGE) of them
BIG = 64 * PAGE  # the payload that will not fit (its format's header and padding tip it over)


class Mounts:
    """Small tmpfs mounts, made on demand and unmounted together."""

    def __init__(self, root: Path) -> None:
        if sys.platform != "linux" or os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs Linux and root")
        self.root, self.mounted = root, []

    def __call__(self, size: str = "2m", name: str = "disk") -> Path:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        self.mounted.append(folder)
        return folder

    def unmount_all(self) -> None:
        for folder in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path):
    """``mount(size, name)``: a fresh tmpfs of that size under tmp_path, unmounted at teardown."""
    mounts = Mounts(tmp_path)
    yield mounts
    mounts.unmount_all()


def _fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves exactly ``leave`` bytes (a multiple of PAGE) free on ``disk``."""
    ballast = disk / "ballast"
    ballast.write_bytes(b"\0" * (shutil.disk_usage(disk).free - leave))
    assert shutil.disk_usage(disk).free == leave
    return ballast


def _one_sentence_about(err: DiskFullError, folder: Path, *remedies: str) -> str:
    text = str(err)
    assert text.startswith(f"No space left in {folder}:") and text.endswith(".")
    assert ". " not in text and "\n" not in text  # one sentence
    assert f"{err.needed:,} bytes" in text and f"{err.free:,} bytes" in text
    assert err.free == shutil.disk_usage(folder if folder.exists() else folder.parent).free
    for remedy in remedies:
        assert remedy in text
    return text


def _state(epoch: int, floats: int = 3) -> dict:
    return {"epoch": epoch, "model": {"w": torch.full((floats,), float(epoch))}}


def test_the_error_is_a_tlbench_error_and_an_enospc_oserror_that_pickles():
    err = DiskFullError("No space left in /x: ...", "/x", 10, 2)
    assert isinstance(err, TlbenchError) and isinstance(err, OSError) and err.errno == errno.ENOSPC
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and (back.folder, back.needed, back.free) == (Path("/x"), 10, 2)


def test_other_errors_pass_unchanged_and_their_partial_file_is_removed(tmp_path):
    partial = tmp_path / ".x.tmp"
    with pytest.raises(ValueError, match="not a disk"), writing(tmp_path, 10, "fix it", partial=partial):
        partial.write_bytes(b"half")
        raise ValueError("not a disk problem")
    assert not partial.exists()
    # torch's short-write riddle on a disk with room to spare is some other I/O fault, not a full disk
    assert not is_disk_full(
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 5 vs 3"), tmp_path, 10
    )
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path, 10)


@pytest.mark.parametrize("room", [PAGE, BIG], ids=["refused-up-front", "full-mid-write"])
def test_a_checkpoint_that_does_not_fit_keeps_the_last_good_one(small_disk, room):
    """Refused before writing (far too little room), or torch.save's "unexpected pos" mid-write
    (room for the tensors, not for the file): the same sentence, last.pt / prev.pt untouched."""
    disk = small_disk("2m")
    ck = Checkpointer(disk / "run", "cell1")
    ck.save(_state(1))
    ck.save(_state(2))
    ballast = _fill(disk, leave=room)
    big = _state(3, floats=BIG // 4)
    assert state_nbytes(big) == BIG

    with pytest.raises(DiskFullError) as info:
        ck.save(big)
    _one_sentence_about(info.value, ck.folder, "--checkpoint-dir", "TLBENCH_CHECKPOINTS")
    assert info.value.needed == BIG
    if room == BIG:  # it came from the write itself: torch's riddle, kept as the cause
        assert isinstance(info.value.__cause__, RuntimeError)
    assert sorted(p.name for p in ck.folder.iterdir()) == ["last.pt", "prev.pt"]  # no temp file left
    assert ck.load()["epoch"] == 2 and torch.load(ck.prev, weights_only=True)["epoch"] == 1

    ballast.unlink()  # space freed: the next save goes through and the chain goes on
    ck.save(big)
    assert ck.load()["epoch"] == 3 and torch.load(ck.prev, weights_only=True)["epoch"] == 2


@pytest.mark.parametrize("room", [0, BIG], ids=["refused-up-front", "full-mid-write"])
def test_a_feature_store_entry_that_does_not_fit_leaves_nothing_to_read(small_disk, room):
    disk = small_disk("2m")
    store = FeatureStore(disk / "features", budget_bytes=10**9)
    small = {"features": torch.ones(4, 2), "labels": torch.zeros(4, dtype=torch.long)}
    store.put("small", small, {})
    _fill(disk, leave=room)
    entry = {
        "features": torch.ones(BIG // 4 - 8, dtype=torch.float32),
        "labels": torch.zeros(4, dtype=torch.long),
    }

    with pytest.raises(DiskFullError) as info:
        store.put("big", entry, {"split": "train"})
    _one_sentence_about(info.value, store.root, "TLBENCH_FEATURE_STORE", "tlbench cache clear")
    assert info.value.needed == BIG
    assert sorted(p.name for p in store.root.iterdir() if p.suffix != ".lock") == ["small.safetensors"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a half-written entry would be dropped with a warning
        assert store.get("big") is None
    assert [e.key for e in store.entries()] == ["small"]
    assert torch.equal(store.get("small")["features"], small["features"])


@pytest.mark.parametrize("room", [0, BIG], ids=["refused-up-front", "full-mid-write"])
def test_a_tensor_cache_that_does_not_fit_leaves_nothing_to_read(small_disk, room):
    disk = small_disk("2m")
    (disk / "tensors").mkdir()
    _fill(disk, leave=room)
    path = cache_path(disk, "synthetic", {"classes": 4}, "fingerprint")
    arrays = {"train_x": np.zeros(BIG - 16, np.uint8), "train_y": np.zeros(2, np.int64)}

    with pytest.raises(DiskFullError) as info:
        write_cache(path, arrays, {"classes": ["a"]})
    _one_sentence_about(info.value, path.parent, "--data-dir", "TLBENCH_DATA")
    assert info.value.needed == BIG
    assert list(path.parent.iterdir()) == [] and read_cache(path) is None


def test_a_full_feature_store_costs_the_next_cell_its_reuse_not_this_cell_its_run(small_disk, monkeypatch):
    """The store is a speed-up: train/features.py warns with the sentence (a DiskFullError is an
    OSError) and the cell trains on the features it just extracted."""
    disk = small_disk("1m", "features")
    _fill(disk, leave=0)
    monkeypatch.setenv("TLBENCH_FEATURE_STORE", str(disk))
    data = load_dataset("synthetic", params=SYNTH, seed=0)
    with pytest.warns(UserWarning, match=f"feature store: could not write .*No space left in {disk}: "):
        result = fit(make_cell("linear_probe", epochs=2, lr=0.2), data, device="cpu")
    assert 0 <= result.test_acc <= 1
    assert not [p.name for p in disk.iterdir() if p.suffix == ".tmp" or p.name.endswith(".safetensors")]


TINY_GRID = """
name: full
train: {epochs: 2, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
datasets:
  - {name: synthetic, params: {classes: 4, train_per_class: 30, val_per_class: 8, test_per_class: 8, image_size: 16}}
backbones: [{name: test_resnet, weights: none}]
strategies: [scratch]
optimizers: [sgd]
augmentations: [none]
"""


def _run(grid: Path, store: str) -> tuple[int, str]:
    out = CliRunner().invoke(
        main, ["run", "--grid", str(grid), "--tracking-uri", store], catch_exceptions=False
    )
    return out.exit_code, " ".join(out.output.split())  # rich wraps the table: compare unwrapped


@pytest.fixture(scope="module")
def full_then_freed(tmp_path_factory):
    """``tlbench run`` of a one-cell grid whose checkpoint disk holds epoch 1's checkpoint, not
    epoch 2's; then the ballast deleted and the same command again. Both tests below read it."""
    root = tmp_path_factory.mktemp("full-disk")
    mounts = Mounts(root)
    store = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    grid = root / "grid.yaml"
    grid.write_text(TINY_GRID)
    try:
        disk = mounts("8m", "checkpoints")
        ballast = _fill(disk, leave=1152 * PAGE)  # 4.7 MB: one test_resnet checkpoint (3.0 MB), not two
        with pytest.MonkeyPatch.context() as env:
            env.setenv("TLBENCH_CHECKPOINTS", str(disk))
            env.setenv("TLBENCH_CHECKPOINT_S", "0")  # every epoch
            first = _run(grid, store)
            client = MlflowClient(store)
            (failed,) = client.search_runs([client.get_experiment_by_name("full").experiment_id])
            logged = [m.step for m in client.get_metric_history(failed.info.run_id, "val_acc")]
            ballast.unlink()
            second = _run(grid, store)
        runs = client.search_runs([failed.info.experiment_id], order_by=["start_time DESC"])
        yield {
            "disk": disk,
            "first": first,
            "failed": failed,
            "second": second,
            "runs": runs,
            "client": client,
            "logged": logged,
        }
    finally:
        mounts.unmount_all()


def test_a_full_checkpoint_disk_fails_the_cell_in_one_sentence_and_a_rerun_finishes_it(full_then_freed):
    """The cell FAILED with the sentence (not RUNNING, no riddle); once space is freed, the same
    command finishes the cell."""
    (code, output), failed = full_then_freed["first"], full_then_freed["failed"]
    folder = full_then_freed["disk"] / failed.info.run_id
    reason = failed.data.tags[tags.REASON]
    assert code == 1 and failed.info.status == "FAILED"
    assert f"No space left in {folder}: writing the checkpoint needs about " in reason
    assert "TLBENCH_CHECKPOINTS" in reason and "unexpected pos" not in reason + output
    assert f"No space left in {folder}: writing the checkpoint" in output and "TLBENCH_CHECKPOINTS" in output
    assert full_then_freed["logged"] == [
        0
    ]  # epoch 1 was checkpointed and logged; epoch 2's checkpoint did not fit

    code, output = full_then_freed["second"]
    runs = full_then_freed["runs"]
    assert code == 0, output
    assert runs[0].info.status == "FINISHED" and "RUNNING" not in {r.info.status for r in runs}


def test_once_space_is_freed_the_rerun_resumes_the_cell_from_its_last_good_checkpoint(full_then_freed):
    failed, client = full_then_freed["failed"], full_then_freed["client"]
    resumed = client.get_run(failed.info.run_id)
    assert resumed.info.status == "FINISHED" and len(full_then_freed["runs"]) == 1  # the same run
    assert resumed.data.tags[tags.RESUMED_FROM_EPOCH] == "1" and tags.REASON not in resumed.data.tags
    assert sorted(m.step for m in client.get_metric_history(failed.info.run_id, "val_acc")) == [0, 1]


def test_a_full_artifact_store_fails_the_cell_in_one_sentence_and_leaves_no_half_copy(
    small_disk, write_grid, store, monkeypatch, tmp_path
):
    disk = small_disk("4m", "mlruns/artifacts")  # where the store fixture's runs keep their artifacts
    _fill(disk, leave=0)
    monkeypatch.setenv("TLBENCH_CHECKPOINTS", str(tmp_path / "checkpoints"))
    code, output = _run(write_grid(TINY_GRID), store)
    client = MlflowClient(store)
    (failed,) = client.search_runs([client.get_experiment_by_name("full").experiment_id])
    reason = failed.data.tags[tags.REASON]
    assert code == 1 and failed.info.status == "FAILED"
    assert f"No space left in {disk}/" in reason and "copying the run's artifacts into the store" in reason
    assert "MLFLOW_TRACKING_URI" in reason and "No space left in" in output
    assert sorted(p.name for p in disk.rglob("*") if p.is_file()) == ["ballast"]
    (disk / "ballast").unlink()  # space freed: the trained cell's kept checkpoint finishes the same run
    code, output = _run(write_grid(TINY_GRID), store)
    assert code == 0, output
    assert client.get_run(failed.info.run_id).info.status == "FINISHED"
