"""What ``tlbench rank`` scores: one target per (dataset, backbone, seed), through which cell."""

from __future__ import annotations

from tlbench.api import load_grid
from tlbench.rank.order import ordered
from tlbench.rank.targets import targets, unfinished_sources


def test_rank_offline_has_a_target_per_dataset_backbone_and_seed():
    g = load_grid("rank_offline")
    found = targets(g.cells)
    assert len(found) == 2 * 6 * 3
    assert len({t.key for t in found}) == 12
    assert {t.seed for t in found} == {0, 1, 2}
    # a frozen-backbone cell is preferred: its feature-store entry is the probes' own
    assert {t.cell.strategy.name for t in found} == {"linear_probe"}
    # scratch cells (the sources) rank nothing: their backbone is not a transferred one
    assert not {t.dataset for t in found} & {"synthetic", "fashion_mnist-25pct"}
    # a replicate is scored through the cell of its own seed (its data draw, its source)
    assert all(t.cell.train.seed == t.seed for t in found)


def test_unfinished_sources_name_the_cells_to_run_first():
    g = load_grid("rank_offline")
    found = targets(g.cells)
    missing = unfinished_sources(found, set())
    assert sorted(missing) == sorted(
        [
            "synthetic/test_resnet/scratch/sgd/basic",
            "fashion_mnist-25pct/test_resnet/scratch/sgd/basic",
            "synthetic/test_vit/scratch/adamw/basic",
            "fashion_mnist-25pct/test_vit/scratch/adamw/basic",
        ]
    )
    done = {c.id for c in g.cells if c.strategy.name == "scratch"}
    assert unfinished_sources(found, done) == []


def test_a_score_orders_each_datasets_backbones_best_first_seed_by_seed():
    g = load_grid("rank_offline")
    labels = [
        "resnet-random",
        "resnet-synthetic",
        "resnet-fmnist",
        "vit-random",
        "vit-synthetic",
        "vit-fmnist",
    ]
    means = {t.key: float(labels.index(t.backbone)) for t in targets(g.cells)}  # vit-fmnist best
    order, unscorable = ordered(g.cells, means)
    assert unscorable == []
    assert sorted(c.name for c in order) == sorted(c.name for c in g.cells)
    # the sources (nothing ranked) first, then the best backbone of every dataset, seed 0
    assert all(c.strategy.name == "scratch" for c in order[:4])
    firsts = [c.labels["backbone"] for c in order[4:8]]
    assert firsts == ["vit-fmnist"] * 4
    seeds = [c.train.seed for c in order[4:]]
    assert seeds == sorted(seeds)  # every configuration's seed 0 before any seed 1
    means[("digits-25pct", "vit-random")] = float("nan")
    _, unscorable = ordered(g.cells, means)
    assert unscorable == ["vit-random on digits-25pct"]
