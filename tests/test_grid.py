"""Expansion, stable ids, excludes, blocks, ``cell:`` ordering and --select."""

from __future__ import annotations

import pytest

from tlbench.cells import expand, select, with_dependencies
from tlbench.spec import SpecError, parse_grid

GRID = {
    "name": "g",
    "train": {"epochs": 2, "lr": 0.01},
    "datasets": ["digits", {"name": "synthetic", "params": {"classes": 3}}],
    "backbones": [{"name": "test_resnet", "weights": "none", "train": {"lr": 0.5}}],
    "strategies": ["linear_probe", "finetune", "scratch"],
    "optimizers": ["sgd", {"name": "adamw", "train": {"lr": 0.001}}],
    "augmentations": ["none"],
}


def test_cross_product_and_names():
    cells = expand(parse_grid(GRID))
    assert len(cells) == 2 * 1 * 3 * 2 * 1
    names = {c.name for c in cells}
    assert "digits/test_resnet/linear_probe/sgd/none" in names
    assert len(names) == len(cells)


def test_ids_stable_and_independent_of_order():
    a = {c.name: c.id for c in expand(parse_grid(GRID))}
    shuffled = dict(GRID)
    shuffled["strategies"] = list(reversed(GRID["strategies"]))
    shuffled["datasets"] = list(reversed(GRID["datasets"]))
    shuffled = dict(reversed(list(shuffled.items())))  # key order too
    b = {c.name: c.id for c in expand(parse_grid(shuffled))}
    assert a == b
    assert len(set(a.values())) == len(a)


def test_id_changes_with_content_and_defaults_are_filled():
    base = {c.name: c.id for c in expand(parse_grid(GRID))}
    changed = dict(GRID, train={"epochs": 3, "lr": 0.01})
    assert all(base[n] != i for n, i in ((c.name, c.id) for c in expand(parse_grid(changed))))
    spelled = dict(GRID, optimizers=[{"name": "sgd", "params": {"momentum": 0.9}}, GRID["optimizers"][1]])
    assert {c.name: c.id for c in expand(parse_grid(spelled))} == base


def test_recipe_version_is_part_of_every_id(monkeypatch):
    """Bumped when a default changes what cells train (#13: head init, BatchNorm mode): every
    id changes, so a store reruns its cells instead of mixing old and new results under one id."""
    import tlbench.cells.expansion as grid

    base = {c.name: c.id for c in expand(parse_grid(GRID))}
    monkeypatch.setattr(grid, "RECIPE", grid.RECIPE + 1)
    assert all(base[c.name] != c.id for c in expand(parse_grid(GRID)))


def test_new_defaults_spelled_out_are_the_same_cell():
    def ids(**changes):
        return {c.name: c.id for c in expand(parse_grid(dict(GRID, **changes)))}

    base = ids(strategies=["lp_ft"])
    assert ids(strategies=[{"name": "lp_ft", "params": {"bn": "adapt"}}]) == base
    assert set(ids(strategies=[{"name": "lp_ft", "params": {"bn": "train"}}]).values()).isdisjoint(
        base.values()
    )
    assert ids(strategies=["lp_ft"], train={"epochs": 2, "lr": 0.01, "head": {"init": "zero"}}) == base
    other = ids(strategies=["lp_ft"], train={"epochs": 2, "lr": 0.01, "head": {"init": "normal"}})
    assert set(other.values()).isdisjoint(base.values())


def test_override_precedence():
    cells = {c.name: c for c in expand(parse_grid(GRID))}
    assert cells["digits/test_resnet/finetune/sgd/none"].train.lr == 0.5  # backbone beats grid
    assert cells["digits/test_resnet/finetune/adamw/none"].train.lr == 0.001  # optimizer beats backbone


def test_exclude_by_glob():
    grid = dict(GRID, exclude=[{"dataset": "synth*", "strategy": "scratch"}])
    names = {c.name for c in expand(parse_grid(grid))}
    assert not any(n.startswith("synthetic/") and "/scratch/" in n for n in names)
    assert any(n.startswith("digits/") and "/scratch/" in n for n in names)
    assert len(names) == 12 - 2


def test_subset_entries_get_distinct_labels():
    grid = dict(GRID, datasets=["digits", {"name": "digits", "train": {"subset": 0.25}}])
    names = {c.name.split("/")[0] for c in expand(parse_grid(grid))}
    assert names == {"digits", "digits-25pct"}


def test_colliding_names_need_a_label():
    grid = dict(GRID, datasets=[{"name": "synthetic", "params": {"classes": 3}}, {"name": "synthetic"}])
    with pytest.raises(SpecError, match="label"):
        expand(parse_grid(grid))


BLOCKS = {
    "name": "b",
    "train": {"epochs": 2},
    "optimizers": ["sgd"],
    "augmentations": ["none"],
    "blocks": [
        {
            "name": "transfer",
            "datasets": ["digits"],
            "backbones": [{"name": "test_resnet", "weights": "cell:synthetic/test_resnet/scratch/sgd/none"}],
            "strategies": ["linear_probe", "scratch"],
        },
        {
            "name": "source",
            "datasets": ["synthetic"],
            "backbones": [{"name": "test_resnet", "weights": "none"}],
            "strategies": ["scratch"],
        },
    ],
}


def test_cell_sources_run_first_and_scratch_ignores_weights():
    cells = expand(parse_grid(BLOCKS))
    order = [c.name for c in cells]
    src = "synthetic/test_resnet/scratch/sgd/none"
    assert order.index(src) < order.index("digits/test_resnet/linear_probe/sgd/none")
    probe = next(c for c in cells if c.strategy.name == "linear_probe")
    assert probe.depends_on == src and probe.depends_on_id == cells[order.index(src)].id
    scratch = next(c for c in cells if c.name == "digits/test_resnet/scratch/sgd/none")
    assert scratch.weights.kind == "none" and scratch.depends_on is None


def test_unknown_cell_source_is_an_error():
    bad = dict(BLOCKS, blocks=[dict(BLOCKS["blocks"][0])])
    with pytest.raises(SpecError, match="names no cell"):
        expand(parse_grid(bad))


def test_source_id_flows_into_target_id():
    a = {c.name: c.id for c in expand(parse_grid(BLOCKS))}
    blocks = [dict(b) for b in BLOCKS["blocks"]]
    blocks[1]["train"] = {"epochs": 5}  # change only the source
    b = {c.name: c.id for c in expand(parse_grid(dict(BLOCKS, blocks=blocks)))}
    assert a["digits/test_resnet/linear_probe/sgd/none"] != b["digits/test_resnet/linear_probe/sgd/none"]
    assert a["digits/test_resnet/scratch/sgd/none"] == b["digits/test_resnet/scratch/sgd/none"]


def test_select_and_dependencies():
    cells = expand(parse_grid(BLOCKS))
    chosen = select(cells, ["digits/*/linear_probe/*"])
    assert [c.name for c in chosen] == ["digits/test_resnet/linear_probe/sgd/none"]
    full = with_dependencies(chosen, cells)
    assert [c.name for c in full] == [
        "synthetic/test_resnet/scratch/sgd/none",
        "digits/test_resnet/linear_probe/sgd/none",
    ]
    assert select(cells, None) == cells
    assert select(cells, [cells[0].id[:6]]) == [cells[0]]


def test_reported_numbers_attach_by_glob_and_leave_ids_alone():
    plain = {c.name: c.id for c in expand(parse_grid(GRID))}
    grid = dict(GRID, reported={"digits/*/finetune/*": {"test_acc": 0.9, "source": "seed 000"}})
    cells = expand(parse_grid(grid))
    assert {c.name: c.id for c in cells} == plain
    marked = [c for c in cells if c.reported]
    assert {c.name for c in marked} == {
        "digits/test_resnet/finetune/sgd/none",
        "digits/test_resnet/finetune/adamw/none",
    }
    assert marked[0].reported == {"test_acc": 0.9, "source": "seed 000"}


def _sized(**dataset_train):
    raw = dict(GRID, datasets=[{"name": "digits", "train": dataset_train}], strategies=["finetune"])
    raw["optimizers"] = ["sgd"]
    return expand(parse_grid(raw))


def test_sizes_enter_the_id_and_label_only_when_set():
    plain, shot, shot_again, ex = _sized(), _sized(shots=5), _sized(shots=5), _sized(train_examples=1000)
    assert plain[0].name.startswith("digits/") and shot[0].name.startswith("digits-5shot/")
    assert ex[0].name.startswith("digits-1000ex/")
    assert len({plain[0].id, shot[0].id, ex[0].id}) == 3 and shot[0].id == shot_again[0].id
    assert _sized(shots=None)[0].id == plain[0].id  # an explicit null is the unset default
    assert shot[0].flat_params()["shots"] == "5" and plain[0].flat_params()["shots"] == ""


def test_sizes_with_seeds_give_each_replicate_its_own_draw_seed():
    raw = dict(GRID, seeds=3, datasets=[{"name": "digits", "train": {"shots": 2}}], strategies=["finetune"])
    cells = expand(parse_grid(dict(raw, optimizers=["sgd"])))
    assert [c.train.seed for c in cells] == [0, 1, 2] and {c.train.shots for c in cells} == {2}


def test_two_sizes_in_one_entry_or_across_layers_are_spec_errors():
    raw = dict(GRID, datasets=[{"name": "digits", "train": {"subset": 0.5, "shots": 2}}])
    with pytest.raises(SpecError) as info:
        parse_grid(raw, file="g.yaml")
    assert info.value.loc == "datasets[0].train" and "subset and shots" in info.value.detail
    raw = dict(GRID, train={"subset": 0.5}, datasets=[{"name": "digits", "train": {"train_examples": 100}}])
    with pytest.raises(SpecError) as info:
        expand(parse_grid(raw, file="g.yaml"), "g.yaml")
    assert "cell digits-100ex/" in str(info.value) and "subset and train_examples" in str(info.value)
    raw["datasets"] = [{"name": "digits", "train": {"train_examples": 100, "subset": None}}]
    assert expand(parse_grid(raw))[0].train.train_examples == 100  # unset in a later layer: fine


LBFGS = {"name": "linear_probe", "label": "lbfgs", "params": {"solver": "lbfgs"}}


def test_an_lbfgs_probe_ignores_optimizer_and_schedule_and_is_one_pass():
    """Its cells differ only in what it ignores: one id (run once), recorded as ignored."""
    cells = {c.name: c for c in expand(parse_grid(dict(GRID, strategies=["linear_probe", LBFGS])))}
    sgd, adamw = cells["digits/test_resnet/lbfgs/sgd/none"], cells["digits/test_resnet/lbfgs/adamw/none"]
    assert sgd.id == adamw.id and sgd.train.epochs == 1
    assert (
        adamw.ignored["optimizer"] == "adamw"
        and adamw.ignored["lr"] == 0.001
        and adamw.ignored["epochs"] == 2
    )
    assert "optimizer=adamw" in adamw.flat_params()["ignored"]
    other = dict(GRID, strategies=[LBFGS], train={"epochs": 30, "lr": 0.3, "batch_size": 7})
    assert {c.name: c.id for c in expand(parse_grid(other))}["digits/test_resnet/lbfgs/sgd/none"] == sgd.id
    # an SGD probe is what it was: the optimizer and its epochs are its result
    assert (
        cells["digits/test_resnet/linear_probe/sgd/none"].id
        != cells["digits/test_resnet/linear_probe/adamw/none"].id
    )
    assert cells["digits/test_resnet/linear_probe/sgd/none"].train.epochs == 2
    grid = dict(GRID, strategies=[{**LBFGS, "params": {"solver": "lbfgs", "l2": [0.1, 1.0]}}])
    assert next(iter(expand(parse_grid(grid)))).id != sgd.id  # its own L2 grid is its result


def test_the_metric_enters_the_id_only_when_not_accuracy():
    base = {c.name: c.id for c in expand(parse_grid(GRID))}
    assert {c.name: c.id for c in expand(parse_grid(dict(GRID, metric="acc")))} == base
    per_class = expand(parse_grid(dict(GRID, metric="mean_per_class_acc")))
    assert all(c.metric == "mean_per_class_acc" and c.id != base[c.name] for c in per_class)
    mixed = dict(GRID, datasets=[{"name": "digits", "metric": "mean_per_class_acc"}, "synthetic"])
    by_dataset = {c.labels["dataset"]: c.metric for c in expand(parse_grid(mixed))}
    assert by_dataset == {"digits": "mean_per_class_acc", "synthetic": "acc"}
    blocks = dict(GRID, blocks=[{"name": "b", "metric": "mean_per_class_acc", "datasets": ["digits"]}])
    assert {c.metric for c in expand(parse_grid(blocks))} == {"mean_per_class_acc"}


def test_an_lbfgs_probe_behind_a_random_augmentation_or_a_non_linear_head_is_an_error():
    with pytest.raises(SpecError) as info:
        expand(parse_grid(dict(GRID, strategies=[LBFGS], augmentations=["none", "basic"])), "g.yaml")
    assert info.value.loc == "strategies[0].params.solver"
    assert "random" in info.value.detail and "{strategy: lbfgs, augmentation: basic}" in info.value.detail
    excluded = dict(
        GRID,
        strategies=[LBFGS],
        augmentations=["none", "basic"],
        exclude=[{"strategy": "lbfgs", "augmentation": "basic"}],
    )
    assert expand(parse_grid(excluded))
    mlp = dict(GRID, strategies=[LBFGS], train={"head": {"type": "mlp", "hidden": [8]}})
    with pytest.raises(SpecError, match="linear head"):
        expand(parse_grid(mlp))
    blocks = dict(GRID, blocks=[{"name": "b", "strategies": ["finetune", LBFGS], "augmentations": ["basic"]}])
    with pytest.raises(SpecError) as info:
        expand(parse_grid(blocks))
    assert info.value.loc == "blocks[0].strategies[1].params.solver"
