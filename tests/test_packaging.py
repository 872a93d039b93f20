"""A wheel works like the README: it ships the grids, and an installed tlbench finds them from
any folder. Real build (setuptools, no isolation), real install into a folder, real command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from helpers import REPO


@pytest.mark.slow
def test_the_wheel_ships_the_grids_and_finds_them_from_any_folder(tmp_path):
    src = tmp_path / "src"  # a clean copy: the build writes build/ and *.egg-info into its tree
    shutil.copytree(
        REPO,
        src,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "mlruns", "build", "dist", "*.egg-info", "__pycache__"
        ),
    )
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            ".",
        ],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("tlbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (REPO / "benchmarks" / "grids").glob("*.yaml")}
    assert {f"tlbench/grids/{n}" for n in shipped} <= names and "tlbench/cli/grids.py" in names

    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"  # no benchmarks/grids/ here, and not the checkout
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "COLUMNS": "300"}
    where = subprocess.run(
        [sys.executable, "-c", "import tlbench; print(tlbench.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip().startswith(str(target)), where  # not the editable checkout
    ls = subprocess.run(
        [sys.executable, "-m", "tlbench.cli", "ls", "--grid", "smoke"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ls.returncode == 0, ls.stderr[-3000:]
    assert "digits-10pct/test_resnet/linear_probe/sgd/none@s1" in ls.stdout
    grids = subprocess.run(
        [sys.executable, "-m", "tlbench.cli", "grids"], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert grids.returncode == 0 and "smoke" in grids.stdout and str(target) in grids.stdout
