"""Per-epoch checkpoints: atomic, fall back to the previous one, never unpickle."""

from __future__ import annotations

import pickle

import pytest
import torch

from tlbench.train.checkpoint import Checkpointer, checkpoint_root


def _state(epoch: int) -> dict:
    return {"epoch": epoch, "model": {"w": torch.full((3,), float(epoch))}, "history": [{"epoch": 0.0}]}


def test_save_keeps_the_previous_epoch_and_loads_the_last(tmp_path):
    ck = Checkpointer(tmp_path / "run", "cell1")
    assert ck.load() is None and not ck.exists()
    ck.save(_state(1))
    ck.save(_state(2))
    assert ck.load()["epoch"] == 2
    assert torch.load(ck.prev, weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["last.pt", "prev.pt"]  # no temp left


def test_an_interrupt_at_any_step_of_a_save_leaves_last_pt_in_place(tmp_path, monkeypatch):
    """Ctrl-C lands between bytecodes: whichever rename it follows, ``last.pt`` is still there."""
    import tlbench.train.checkpoint as module

    ck = Checkpointer(tmp_path / "run", "cell1")
    ck.save(_state(1))
    ck.save(_state(2))
    real, calls = module.os.replace, []

    def interrupted_after_first(src, dst):
        real(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(module.os, "replace", interrupted_after_first)
    with pytest.raises(KeyboardInterrupt):
        ck.save(_state(3))
    monkeypatch.undo()
    assert ck.last.exists() and ck.load()["epoch"] == 2
    ck.save(_state(4))  # the next save cleans up after the cut one
    assert ck.load()["epoch"] == 4 and torch.load(ck.prev, weights_only=True)["epoch"] == 2


def test_a_truncated_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_path):
    ck = Checkpointer(tmp_path / "run", "cell1")
    ck.save(_state(1))
    ck.save(_state(2))
    data = ck.last.read_bytes()
    ck.last.write_bytes(data[: len(data) // 2])  # a crash mid-write of a non-atomic copy
    with pytest.warns(UserWarning, match="unreadable"):
        state = ck.load()
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.full((3,), 1.0))


def test_nothing_usable_means_a_clean_start(tmp_path):
    ck = Checkpointer(tmp_path / "run", "cell1")
    ck.save(_state(1))
    ck.last.write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match="starts from scratch"):
        assert ck.load() is None


def test_pickled_objects_are_refused_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    ck = Checkpointer(tmp_path / "run", "cell1")
    ck.folder.mkdir(parents=True)
    with open(ck.last, "wb") as f:
        torch.save({"format": 1, "cell_id": "cell1", "evil": Evil()}, f, pickle_module=pickle)
    with pytest.warns(UserWarning, match="unreadable"):
        assert ck.load() is None


def test_another_cells_checkpoint_is_ignored(tmp_path):
    Checkpointer(tmp_path / "run", "cell1").save(_state(1))
    with pytest.warns(UserWarning, match="belongs to cell cell1"):
        assert Checkpointer(tmp_path / "run", "cell2").load() is None


def test_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TLBENCH_CHECKPOINTS", str(tmp_path / "x"))
    assert checkpoint_root() == tmp_path / "x"
    assert checkpoint_root(tmp_path / "y") == tmp_path / "y"
