"""What ``run_cell`` feeds ``fit``: a cell's sizes (``shots``, ``train_examples``) reach its data."""

from __future__ import annotations

from tlbench.cells import expand
from tlbench.executor.runner import load_cell_data
from tlbench.spec import parse_grid


def _cells(train: dict) -> list:
    raw = {
        "name": "sizes",
        "train": {"epochs": 1, "image_size": 8, **train},
        "seeds": 2,
        "datasets": ["digits"],
        "backbones": [{"name": "test_resnet", "weights": "none"}],
        "strategies": ["scratch"],
        "optimizers": ["sgd"],
        "augmentations": ["none"],
    }
    return expand(parse_grid(raw))


def test_shots_and_train_examples_reach_the_cells_data_and_each_seed_draws_its_own():
    s0, s1 = _cells({"shots": 2})
    a, b = load_cell_data(s0, None), load_cell_data(s1, None)
    assert len(a.train) == len(b.train) == 2 * a.num_classes
    assert a.params()["data.train_sha1"] != b.params()["data.train_sha1"]
    vtab = load_cell_data(_cells({"train_examples": 100})[0], None)
    assert (len(vtab.train), len(vtab.val)) == (80, 20)


def test_a_workers_second_cell_reuses_the_decoded_dataset(monkeypatch):
    """A pool worker is one process for many cells: the second cell of a dataset reads the splits
    the first one loaded (no decode, no tensor-cache read); another seed draws its own."""
    import tlbench.data as data
    from tlbench.executor import runner

    calls = []
    real = data.load_dataset

    def counting(name, **kw):
        calls.append(name)
        return real(name, **kw)

    monkeypatch.setattr(data, "load_dataset", counting)
    runner._load_cached.cache_clear()
    raw = {
        "name": "reuse",
        "train": {"epochs": 1, "image_size": 8},
        "seeds": 2,
        "datasets": ["digits"],
        "backbones": [{"name": "test_resnet", "weights": "none"}],
        "strategies": ["scratch", "finetune"],
        "optimizers": ["sgd"],
        "augmentations": ["none"],
    }
    cells = expand(parse_grid(raw))
    by = {(c.strategy.name, c.train.seed): c for c in cells}
    first = load_cell_data(by[("scratch", 0)], None)
    assert load_cell_data(by[("finetune", 0)], None) is first and calls == ["digits"]
    assert load_cell_data(by[("finetune", 1)], None) is not first and calls == ["digits", "digits"]
