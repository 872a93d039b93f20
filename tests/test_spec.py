"""Grid spec parsing and every kind of bad input: each error names file, key path and choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlbench.spec import (
    SpecError,
    TrainConfig,
    WeightsSpec,
    load_grid,
    merge_train,
    parse_grid,
    resolve_grid_path,
)

REPO = Path(__file__).resolve().parents[1]

BASE = {
    "train": {"epochs": 1},
    "datasets": ["digits"],
    "backbones": [{"name": "test_resnet", "weights": "none"}],
    "strategies": ["linear_probe"],
    "optimizers": ["sgd"],
    "augmentations": ["none"],
}


def _with(**changes):
    raw = {k: (list(v) if isinstance(v, list) else dict(v)) for k, v in BASE.items()}
    raw.update(changes)
    return raw


def _error(raw, file="grid.yaml") -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_grid(raw, file=file, check_backbones=True)  # backbones against timm too
    return info.value


def test_valid_grid_parses_shorthand_entries():
    spec = parse_grid(_with(), file="g.yaml")
    assert spec.datasets[0].name == "digits"
    assert spec.backbones[0].weights == "none"


def test_unknown_top_level_key_names_file_key_and_choices():
    err = _error(_with(epochs=3))
    text = str(err)
    assert text.startswith("grid.yaml: epochs: unknown key 'epochs'")
    assert "valid:" in text and "datasets" in text


def test_unknown_entry_key_has_did_you_mean():
    err = _error(_with(backbones=[{"name": "test_resnet", "wieghts": "none"}]))
    assert err.loc == "backbones[0].wieghts"
    assert "did you mean 'weights'" in err.detail


def test_unknown_training_setting_in_an_axis_entry():
    err = _error(_with(strategies=[{"name": "finetune", "train": {"learning_rate": 0.1}}]))
    assert err.loc == "strategies[0].train.learning_rate"
    assert "did you mean 'lr'" in err.detail or "valid:" in err.detail


def test_wrong_type_names_key_path():
    err = _error(_with(train={"epochs": "many"}))
    assert err.loc == "train.epochs"
    assert "integer" in err.detail


def test_out_of_range_value():
    err = _error(_with(train={"subset": 1.5}))
    assert err.loc == "train.subset"


@pytest.mark.parametrize(
    ("axis", "bad", "suggestion"),
    [
        ("datasets", "digts", "digits"),
        ("strategies", "finetun", "finetune"),
        ("optimizers", "adamv", "adamw"),
        ("augmentations", "basik", "basic"),
        ("backbones", "test_resnt", "test_resnet"),
    ],
)
def test_unknown_names_suggest_the_closest(axis, bad, suggestion):
    entry = {"name": bad, "weights": "none"} if axis == "backbones" else bad
    err = _error(_with(**{axis: [entry]}))
    assert err.loc == f"{axis}[0].name"
    assert f"'{suggestion}'" in err.detail.split("did you mean")[1].split("?")[0]


def test_unknown_strategy_param_lists_valid_params():
    err = _error(_with(strategies=[{"name": "partial", "params": {"freeze": 2}}]))
    assert err.loc == "strategies[0].params"
    assert "freeze_stages" in err.detail


def test_unknown_dataset_param():
    err = _error(_with(datasets=[{"name": "synthetic", "params": {"clases": 3}}]))
    assert err.loc == "datasets[0].params"
    assert "classes" in err.detail


def test_bad_weights_syntax():
    err = _error(_with(backbones=[{"name": "test_resnet", "weights": "somewhere"}]))
    assert err.loc == "backbones[0].weights"
    assert "cell:" in err.detail


def test_missing_axis():
    raw = _with()
    del raw["optimizers"]
    err = _error(raw)
    assert err.loc == "optimizers"


def test_bad_exclude_key():
    err = _error(_with(exclude=[{"strat": "scratch"}]))
    assert "exclude" in err.loc
    assert "did you mean 'strategy'" in err.detail


def test_yaml_syntax_error_names_line(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("name: x\ndatasets: [digits\n")
    with pytest.raises(SpecError) as info:
        load_grid(p)
    assert str(p) in str(info.value) and "line" in info.value.loc


def test_grid_name_resolution(tmp_path):
    assert resolve_grid_path("smoke", root=REPO) == REPO / "benchmarks/grids/smoke.yaml"
    with pytest.raises(SpecError) as info:
        resolve_grid_path("smok", root=REPO)
    assert "did you mean 'smoke'" in str(info.value)


def test_shipped_grids_resolve_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = resolve_grid_path("smoke")  # the package's data (here: tlbench/grids -> benchmarks/grids)
    assert found.resolve() == (REPO / "benchmarks/grids/smoke.yaml").resolve()
    local = tmp_path / "benchmarks" / "grids"
    local.mkdir(parents=True)
    (local / "smoke.yaml").write_text((REPO / "benchmarks/grids/smoke.yaml").read_text())
    assert resolve_grid_path("smoke") == Path("benchmarks/grids/smoke.yaml").absolute()  # this folder's first
    with pytest.raises(SpecError, match="tlbench grids"):
        resolve_grid_path("nope")


def test_the_starter_grid_is_valid_as_written(tmp_path):
    from tlbench.cells import expand
    from tlbench.errors import TlbenchError
    from tlbench.spec.starter import write_starter

    path = write_starter("mine", tmp_path)
    spec = load_grid(path)
    assert spec.name == "mine" and spec.description and path.read_text().count("#") > 10
    cells = expand(spec, path)
    assert len(cells) == 7 and cells[0].name == "synthetic/test_resnet/scratch/sgd/none"
    with pytest.raises(SpecError, match="already exists"):
        write_starter("mine", tmp_path)
    with pytest.raises(TlbenchError, match="names the file"):
        write_starter("../evil", tmp_path)


def test_an_image_size_beyond_any_backbone_is_an_error(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text(
        "name: big\ntrain: {image_size: 4096}\ndatasets: [digits]\nbackbones: [test_resnet]\n"
        "strategies: [scratch]\noptimizers: [sgd]\naugmentations: [none]\n"
    )
    with pytest.raises(SpecError) as info:
        load_grid(p)
    assert info.value.loc == "train.image_size" and "1024" in str(info.value)


def test_merge_train_later_layers_win():
    cfg = merge_train({"lr": 0.1, "epochs": 3}, {"lr": 0.01}, {})
    assert isinstance(cfg, TrainConfig)
    assert (cfg.lr, cfg.epochs) == (0.01, 3)


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("hub", "hub", ""),
        ("hub:a1_in1k", "hub", "a1_in1k"),
        ("none", "none", ""),
        ("file:/tmp/x.safetensors", "file", "/tmp/x.safetensors"),
        ("/tmp/x.pth", "file", "/tmp/x.pth"),
        ("cell:a/b/c/d/e", "cell", "a/b/c/d/e"),
    ],
)
def test_weights_spec_parse(text, kind, value):
    w = WeightsSpec.parse(text)
    assert (w.kind, w.value) == (kind, value)


def test_shipped_grids_are_valid():
    for path in sorted((REPO / "benchmarks/grids").glob("*.yaml")):
        spec = load_grid(path)
        assert spec.name == path.stem


def test_lr_scales_multiply_while_lr_overrides():
    cfg = merge_train({"lr": 0.1}, {"lr_scale": 4}, {"lr": 0.002}, {"lr_scale": 0.5})
    assert cfg.lr == 0.002 and cfg.lr_scale == 2.0
    assert cfg.effective_lr == pytest.approx(0.004)


@pytest.mark.parametrize(
    ("strategy", "loc", "words"),
    [
        (
            {"name": "linear_probe", "params": {"solver": "lbfgs", "l2": [0.1, 0.0]}},
            "strategies[0].params",
            "> 0",
        ),
        (
            {"name": "linear_probe", "params": {"solver": "lbfgs", "l2": []}},
            "strategies[0].params",
            "at least one",
        ),
        ({"name": "linear_probe", "params": {"solver": "newton"}}, "strategies[0].params", "lbfgs"),
        ({"name": "finetune", "params": {"solver": "lbfgs"}}, "strategies[0].params", "no param 'solver'"),
    ],
)
def test_bad_probe_settings_name_the_key(strategy, loc, words):
    err = _error(_with(strategies=[strategy]))
    assert err.loc == loc and words in err.detail


def test_an_unknown_metric_names_the_key_and_the_choices():
    err = _error(_with(metric="top5"))
    assert err.loc == "metric" and "acc" in err.detail and "mean_per_class_acc" in err.detail
    err = _error(_with(datasets=[{"name": "digits", "metric": "f1"}]))
    assert err.loc == "datasets[0].metric"
    assert parse_grid(_with(metric="mean_per_class_acc")).metric == "mean_per_class_acc"


def test_reported_numbers_are_fractions_with_a_protocol():
    spec = parse_grid(
        _with(reported={"*": {"mean_per_class_acc": 0.61, "source": "SimCLR", "protocol": "TF weights"}})
    )
    assert spec.reported["*"].mean_per_class_acc == 0.61 and spec.reported["*"].protocol == "TF weights"
    err = _error(_with(reported={"*": {"mean_per_class_acc": 61.0}}))
    assert err.loc == "reported.*.mean_per_class_acc"


def test_the_grid_reference_is_generated_from_the_schema_and_current():
    """docs/grid-reference.md is the schema's own descriptions; every key has one."""
    from tlbench.spec.reference import grid_reference

    page = grid_reference()
    assert (REPO / "docs" / "grid-reference.md").read_text() == page, (
        "docs/grid-reference.md is stale: python -m tlbench.spec.reference > docs/grid-reference.md"
    )
    assert "|  |" not in page  # a key without a description
    for key in ("`solver`", "`metric`", "`train_examples`", "`rungs`", "`mean_per_class_acc`", "`lp_ft`"):
        assert key in page, key
