"""``tlbench validate``: what cannot be downloaded is an error naming its path; settings that
would only fail (or do nothing) mid-run are reported before any training."""

from __future__ import annotations

from click.testing import CliRunner
from helpers import make_cell

from tlbench.cli import main
from tlbench.preflight.validate import setting_findings

LOCAL_ONLY = """
name: local
train: {epochs: 1, batch_size: 32, image_size: 16}
datasets: [{name: imagefolder, params: {path: MISSING}}, digits]
backbones: [{name: test_resnet, weights: none}, {name: test_resnet, label: mine, weights: "file:WEIGHTS"}]
strategies: [linear_probe]
optimizers: [sgd]
augmentations: [none]
"""


def test_a_missing_local_folder_or_weight_file_is_an_error_naming_it(tmp_path):
    missing, weights = tmp_path / "photos", tmp_path / "nowhere.safetensors"
    grid = tmp_path / "local.yaml"
    grid.write_text(LOCAL_ONLY.replace("MISSING", str(missing)).replace("WEIGHTS", str(weights)))
    result = CliRunner().invoke(main, ["validate", "--grid", str(grid), "--no-build"])
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())  # rich wraps long lines
    assert f"path '{missing}' does not exist here" in out
    assert f"weight file '{weights}' does not exist here" in out
    assert "missing" in out and "local only: nothing to download" in out
    assert "tlbench prefetch` gets it" not in out
    assert "is valid" not in out


def test_settings_that_fail_late_are_found_early():
    short_lpft = make_cell("lp_ft", epochs=1)
    cut = make_cell({"name": "lp_ft", "params": {"lp_epochs": 5}}, epochs=3)
    warm = make_cell(epochs=2, warmup_epochs=2, schedule="step", step_size=10, batch_size=4096)
    errors, warnings = setting_findings([short_lpft, cut, warm])
    assert errors == [f"{short_lpft.name}: lp_ft needs epochs >= 2 (a probe and a fine-tune phase), got 1"]
    assert any("lp_epochs 5 >= epochs 3" in w for w in warnings)
    assert any("warmup_epochs 2 >= epochs 2" in w for w in warnings)
    assert any("step_size 10 >= epochs 2" in w for w in warnings)

    class Splits:  # what load_dataset returns, as far as the check reads it
        train, num_classes = range(240), 4

    _, warnings = setting_findings([warm], {warm.name: Splits()})
    assert any("batch_size 4096 > its 240 training images" in w for w in warnings)


def test_an_lbfgs_probe_is_not_warned_about_settings_it_ignores():
    lbfgs = {"name": "linear_probe", "params": {"solver": "lbfgs"}}
    cell = make_cell(lbfgs, epochs=2, warmup_epochs=2, schedule="step", step_size=10, batch_size=4096)
    assert cell.train.epochs == 1 and cell.ignored["warmup_epochs"] == 2
    assert setting_findings([cell]) == ([], [])
