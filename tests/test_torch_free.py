"""The spec layer loads, expands and selects a grid without importing torch, timm or mlflow.

``tlbench ls`` and every command's first step read a grid; importing torch for that cost
seconds. Each check runs in a fresh interpreter: in this one, other tests have imported torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "mlflow")


def _fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter; it prints a JSON object as its last line."""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_load_expand_select_import_no_torch_timm_or_mlflow():
    result = _fresh(
        f"""
import json, sys
from tlbench.spec import load_grid
from tlbench.cells import expand, select
spec = load_grid("benchmarks/grids/full.yaml")
cells = expand(spec, "benchmarks/grids/full.yaml")
chosen = select(cells, ["cifar10/*"])
heavy = [m for m in {HEAVY!r} if m in sys.modules]
# the check can fail: asking for a torch name of tlbench.data does import torch
from tlbench.data import load_dataset
print(json.dumps({{"cells": len(cells), "chosen": len(chosen), "heavy": heavy, "after": "torch" in sys.modules}}))
"""
    )
    assert result["heavy"] == []
    assert result["cells"] > 100 and 0 < result["chosen"] < result["cells"]
    assert result["after"] is True


def test_registries_and_catalog_import_without_torch():
    result = _fresh(
        f"""
import json, sys
import tlbench.data, tlbench.catalog.datasets, tlbench.errors, tlbench.catalog.backbones, tlbench.catalog.optimizers, tlbench.catalog.strategies
from tlbench.data import AUGMENTATIONS, DatasetNotFoundError, dataset_param_names
from tlbench.catalog.optimizers import OPTIMIZERS
from tlbench.catalog.strategies import STRATEGIES
assert dataset_param_names("synthetic")["classes"] == 10 and "sgd" in OPTIMIZERS and "lp_ft" in STRATEGIES
print(json.dumps({{"heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
    )
    assert result["heavy"] == []


def test_checking_backbones_is_explicit_and_imports_timm():
    """``load_grid`` alone leaves timm alone; ``check_backbones=True`` checks names against it."""
    result = _fresh(
        """
import json, sys
from tlbench.spec import SpecError, load_grid
load_grid("benchmarks/grids/smoke.yaml")
before = "timm" in sys.modules
load_grid("benchmarks/grids/smoke.yaml", check_backbones=True)
print(json.dumps({"before": before, "after": "timm" in sys.modules}))
"""
    )
    assert result == {"before": False, "after": True}


def test_the_package_its_api_and_the_command_line_import_no_torch_timm_or_mlflow():
    result = _fresh(
        f"""
import json, sys
import tlbench, tlbench.api
from tlbench.cli import main
grid = tlbench.load_grid("smoke")
try:
    main(["--help"])
except SystemExit:
    pass
print(json.dumps({{"heavy": [m for m in {HEAVY!r} if m in sys.modules], "cells": len(grid.cells)}}))
"""
    )
    assert result["heavy"] == [] and result["cells"] > 0
