"""Cells whose settings coincide: grouped, explained, and said by ls, validate and run."""

from __future__ import annotations

from click.testing import CliRunner

from tlbench.cells import expand
from tlbench.cells.duplicates import runs_needed, said, same_settings
from tlbench.cli import main
from tlbench.spec import parse_grid

GRID = {
    "name": "g",
    "train": {"epochs": 1, "lr": 0.01},
    "datasets": [{"name": "synthetic", "params": {"classes": 3}}],
    "backbones": [{"name": "test_resnet", "weights": "none"}],
    "strategies": ["scratch", {"name": "scratch", "label": "scratch2"}, "finetune"],
    "optimizers": ["sgd"],
    "augmentations": ["none"],
}
LBFGS = {"name": "linear_probe", "label": "lbfgs", "params": {"solver": "lbfgs"}}

DUP_YAML = """
name: dup
train: {epochs: 1, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
datasets:
  - {name: synthetic, params: {classes: 4, train_per_class: 20, val_per_class: 8, test_per_class: 8, image_size: 16}}
backbones:
  - {name: test_resnet, weights: none}
strategies: [scratch, {name: scratch, label: scratch2}]
optimizers: [sgd]
augmentations: [none]
"""
KEPT, OTHER = "synthetic/test_resnet/scratch/sgd/none", "synthetic/test_resnet/scratch2/sgd/none"


def test_a_relabelled_entry_is_grouped_with_its_twin_and_the_label_named():
    cells = expand(parse_grid(GRID))
    groups = same_settings(cells)
    assert len(cells) == 3 and runs_needed(cells) == 2
    assert [[c.name for c in g.cells] for g in groups] == [[KEPT, OTHER]]
    assert groups[0].sentence() == (
        f"{KEPT} = {OTHER}: one run serves both (their strategy entries differ in label only)"
    )


def test_an_lbfgs_probe_under_each_optimizer_says_the_optimizer_is_ignored():
    cells = expand(parse_grid(dict(GRID, strategies=[LBFGS], optimizers=["sgd", "adamw", "adam"])))
    (group,) = same_settings(cells)
    assert len(group.cells) == 3 and runs_needed(cells) == 1
    assert group.sentence().endswith("one run serves all 3 (the strategy ignores the optimizer)")


def test_distinct_cells_are_not_grouped_and_long_lists_are_cut():
    assert same_settings(expand(parse_grid(dict(GRID, strategies=["scratch", "finetune"])))) == []
    many = expand(
        parse_grid(
            dict(
                GRID,
                strategies=[LBFGS],
                optimizers=["sgd", "adamw"],
                datasets=[
                    {"name": "synthetic", "label": f"s{i}", "params": {"classes": 3, "seed": i}}
                    for i in range(4)
                ],
            )
        )
    )
    lines = said(same_settings(many), limit=2)
    assert len(lines) == 3 and lines[-1] == "... and 2 more groups of cells with identical settings"


def test_ls_validate_and_run_say_which_cells_share_one_run(tmp_path, store, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    grid = tmp_path / "dup.yaml"
    grid.write_text(DUP_YAML)
    cli = CliRunner()
    sentence = f"{KEPT} = {OTHER}: one run serves both"
    ls = cli.invoke(main, ["ls", "--grid", str(grid)], catch_exceptions=False)
    assert ls.exit_code == 0 and "2 cells make 1 run:" in ls.output and sentence in ls.output
    val = cli.invoke(main, ["validate", "--grid", str(grid), "--no-build"], catch_exceptions=False)
    assert val.exit_code == 0 and "2 cells making 1 run" in val.output and sentence in val.output
    run = cli.invoke(main, ["run", "--grid", str(grid), "--tracking-uri", store], catch_exceptions=False)
    assert run.exit_code == 0 and "2 cells, 1 run:" in run.output and sentence in run.output

    from mlflow import MlflowClient

    client = MlflowClient(store)
    (exp,) = [e for e in client.search_experiments() if e.name == "dup"]
    runs = [r for r in client.search_runs([exp.experiment_id]) if "tlbench.variant" not in r.data.tags]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
