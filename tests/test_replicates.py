"""Replicates (``seeds:``): names, ids, configurations, order, chained sources, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import REPO

from tlbench.cells import expand, select
from tlbench.spec import SpecError, load_grid, parse_grid
from tlbench.tune import study_name

PINNED = REPO / "tests" / "fixtures"

GRID = {
    "name": "r",
    "train": {"epochs": 1, "seed": 0},
    "datasets": ["digits", {"name": "digits", "train": {"subset": 0.5}}],
    "backbones": [{"name": "test_resnet", "weights": "none"}],
    "strategies": ["scratch", "finetune"],
    "optimizers": ["sgd"],
    "augmentations": ["none"],
}


def _cells(**changes):
    return expand(parse_grid({**GRID, **changes}))


@pytest.mark.parametrize("grid", ["smoke", "transfer_offline", "seeds", "full"])
def test_seedless_grids_keep_the_ids_main_had_before_replicates(grid):
    """The shipped grids as they were when replicates came (after the head-init recipe bump):
    expanding them must give exactly those names and ids, so no store reruns anything."""
    pinned = json.loads((PINNED / "pinned_ids.json").read_text())[grid]
    cells = expand(load_grid(PINNED / "pinned_grids" / f"{grid}.yaml"))
    assert {c.name: c.id for c in cells} == pinned
    assert all(c.config_id == c.id and c.replicate is None for c in cells)


def test_replicates_differ_only_in_seed_and_the_base_seed_is_the_cell():
    plain = {c.name: c for c in _cells()}
    reps = _cells(seeds=3)
    assert len(reps) == 3 * len(plain)
    for c in reps:
        base = plain[c.config_name]
        assert c.name == f"{c.config_name}@s{c.replicate}" and c.train.seed == c.replicate
        assert c.config_id == base.id  # the configuration's id: its content at the base seed
        assert (c.id == base.id) == (c.replicate == 0)  # seed 0 (the grid's seed) *is* the old cell
        assert c.train.model_copy(update={"seed": 0}) == base.train
    assert len({c.id for c in reps}) == len(reps)


def test_run_order_interleaves_replicates():
    reps = _cells(seeds=[3, 1])
    ranks = [c.replicate for c in reps]
    assert ranks == [3] * 4 + [1] * 4  # every configuration's first seed before any second one


def test_the_innermost_seeds_win():
    cells = _cells(
        seeds=2, strategies=["scratch", {"name": "finetune", "seeds": [5, 6, 7]}], datasets=["digits"]
    )
    by_strategy = {}
    for c in cells:
        by_strategy.setdefault(c.strategy.name, []).append(c.replicate)
    assert by_strategy == {"scratch": [0, 1], "finetune": [5, 6, 7]}


CHAIN = {
    "name": "chain",
    "train": {"epochs": 1},
    "datasets": ["digits"],
    "optimizers": ["sgd"],
    "augmentations": ["none"],
    "blocks": [
        {"name": "src", "strategies": ["scratch"], "backbones": [{"name": "test_resnet", "weights": "none"}]},
        {
            "name": "dst",
            "strategies": ["finetune"],
            "seeds": 2,
            "backbones": [
                {
                    "name": "test_resnet",
                    "label": "from",
                    "weights": "cell:digits/test_resnet/scratch/sgd/none",
                }
            ],
        },
    ],
}


def test_a_replicated_target_loads_the_source_replicate_of_its_seed_or_the_single_source():
    single = {c.name: c for c in expand(parse_grid(CHAIN))}
    assert single["digits/from/finetune/sgd/none@s1"].depends_on == "digits/test_resnet/scratch/sgd/none"
    both = dict(CHAIN, blocks=[dict(CHAIN["blocks"][0], seeds=2), CHAIN["blocks"][1]])
    cells = {c.name: c for c in expand(parse_grid(both))}
    for s in (0, 1):
        target = cells[f"digits/from/finetune/sgd/none@s{s}"]
        assert target.depends_on == f"digits/test_resnet/scratch/sgd/none@s{s}"
        assert str(target.weights) == f"cell:digits/test_resnet/scratch/sgd/none@s{s}"  # shown by ls
    assert len({c.config_id for c in cells.values() if c.block == "dst"}) == 1
    other = dict(CHAIN, blocks=[dict(CHAIN["blocks"][0], seeds=[7, 8]), CHAIN["blocks"][1]])
    with pytest.raises(SpecError, match=r"seeds \[7, 8\] but not seed 0"):
        expand(parse_grid(other))


def test_select_addresses_one_replicate_or_all():
    cells = _cells(seeds=2)
    assert {c.replicate for c in select(cells, ["*@s1"])} == {1}
    one = select(cells, ["digits/test_resnet/scratch/sgd/none"])
    assert [c.name for c in one] == [
        "digits/test_resnet/scratch/sgd/none@s0",
        "digits/test_resnet/scratch/sgd/none@s1",
    ]
    assert select(cells, [one[0].config_id]) == one  # a configuration id selects its replicates


def test_one_study_per_configuration():
    cells = _cells(seeds=3)
    names = {study_name(c) for c in cells if c.config_name == "digits/test_resnet/scratch/sgd/none"}
    assert len(names) == 1


@pytest.mark.parametrize(
    ("seeds", "words"),
    [(0, "gives no replicate"), ([], "empty list"), ([1, 1], "distinct"), ([-1], ">= 0")],
)
def test_bad_seeds_name_the_key(seeds, words):
    with pytest.raises(SpecError, match=words) as info:
        _cells(strategies=[{"name": "scratch", "seeds": seeds}])
    assert info.value.loc == "strategies[0].seeds"


def test_seeds_and_an_entry_seed_conflict():
    with pytest.raises(SpecError, match="conflicts with `seeds:`") as info:
        _cells(seeds=2, datasets=[{"name": "digits", "train": {"seed": 3}}])
    assert info.value.loc == "datasets[0].train.seed"
    assert len(_cells(seeds=2, train={"epochs": 1, "seed": 4})) == 8  # the grid's own seed is the base


def test_data_seed_holds_the_split_while_replicates_resample_it(tmp_path: Path):
    from tlbench.executor.runner import load_cell_data

    def val_labels(**train):
        cells = _cells(seeds=2, datasets=[{"name": "digits", "train": {"subset": 0.5, **train}}])
        by_seed = {c.replicate: load_cell_data(c, None) for c in cells if c.strategy.name == "scratch"}
        return [d.train.labels.tolist() for d in by_seed.values()]

    a, b = val_labels()
    assert a != b  # each seed draws its own subset and val carve
    a, b = val_labels(data_seed=0)
    assert a == b
