"""Files and terminal tables: `tlbench report` writes CSV that round-trips, Markdown and one
self-contained HTML page (rendered by a real browser when there is one); bold marks the best."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from rich.console import Console

from tlbench.cli import main
from tlbench.report import render
from tlbench.report.tables import Report


def test_cli_report_writes_csv_that_round_trips_md_and_html(filled, make_report, tmp_path):
    grid, store, _ = filled
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["report", "--grid", str(grid), "--tracking-uri", store, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    cells = pd.read_csv(out / "cells.csv")
    rep, _ = make_report(grid, store, tmp_path / "again")
    pd.testing.assert_series_equal(cells["test_acc"], rep.cells["test_acc"], check_names=False)
    assert set(cells["status"]) == {"FINISHED", "MISSING"}
    piv = pd.read_csv(out / "pivot_test_acc.csv", index_col=[0, 1])
    assert piv.loc[("synthetic", "test_resnet"), "scratch"] == pytest.approx(
        rep.pivot.loc[("synthetic", "test_resnet"), "scratch"]
    )
    md = (out / "report.md").read_text()
    assert "| dataset | backbone | linear_probe | scratch |" in md and "MISSING" in md
    page = (out / "report.html").read_text()
    assert page.count("<table>") >= 5 and page.count("data:image/png;base64,") >= 3
    # the grid's parent run holds the report
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("rep")
    parents = client.search_runs([exp.experiment_id], "tags.`tlbench.grid_report` = 'true'")
    assert len(parents) == 1
    names = {a.path for a in client.list_artifacts(parents[0].info.run_id, "report")}
    assert {"report/report.html", "report/report.md", "report/cells.csv"} <= names


def test_bad_axis_is_a_clear_error(filled):
    grid, store, _ = filled
    result = CliRunner().invoke(
        main, ["report", "--grid", str(grid), "--tracking-uri", store, "--rows", "datset"]
    )
    assert result.exit_code == 2
    assert "unknown axis 'datset'" in result.output


def _small_report() -> Report:
    """A report made by hand: two datasets by two strategies, one tie, one missing cell."""
    pivot = pd.DataFrame(
        {"lp": [0.5, 0.7], "ft": [0.9, 0.7]}, index=pd.Index(["d2", "d1"], name="dataset")
    ).rename_axis(columns="strategy")
    cells = pd.DataFrame(
        {
            "cell": ["d2/lp", "d2/ft", "d1/lp", "d1/ft|x"],
            "status": ["FINISHED", "FINISHED", "FINISHED", "MISSING"],
            "dataset": ["d2", "d2", "d1", "d1"],
            "test_acc": [0.5, 0.9, 0.7, None],
            "best_val_acc": [0.55, 0.85, 0.75, None],
            "best_epoch": [1.0, 2.0, 1.0, None],
            "train_time_s": [1.25, 2.0, 3.0, None],
            "trainable": ["1.0k of 2.0k", None, None, None],
            "epochs": [3, 3, 3, 3],
            "reason": ["", "", "", ""],
        }
    )
    empty = pd.DataFrame()
    return Report(
        "g",
        cells,
        pivot,
        pivot,
        pd.DataFrame(columns=["axis"]),
        empty,
        cells,
        empty,
        empty,
        ["dataset"],
        ["strategy"],
    )


def test_markdown_marks_each_rows_best_and_escapes_pipes():
    md = render.to_markdown(_small_report())
    assert md.startswith("# tlbench report: grid `g`\n\n4 cells: FINISHED 3, MISSING 1.")
    assert "| d2 | 0.5000 | **0.9000** |" in md
    assert "| d1 | **0.7000** | **0.7000** |" in md  # ties are all best
    assert "d1/ft\\|x" in md and "| 3 |" in md  # epochs are counts, not 3.0000
    assert "Tuned vs untuned" not in md and "Reported elsewhere" not in md


def test_write_md_and_csv_only_what_was_asked(tmp_path):
    files = render.write(_small_report(), tmp_path, ["md", "csv"])
    assert [f.name for f in files] == [
        "report.md",
        "cells.csv",
        "pivot_test_acc.csv",
        "pivot_best_val_acc.csv",
        "axis_effects.csv",
        "val_acc_per_epoch.csv",
    ]
    assert not (tmp_path / "report.html").exists()
    assert list(pd.read_csv(tmp_path / "cells.csv").columns)[-1] == "reason"
    piv = pd.read_csv(tmp_path / "pivot_test_acc.csv", index_col=0)
    assert piv.loc["d2", "ft"] == 0.9


def test_html_is_one_page_with_best_and_status_classes():
    page = render.to_html(_small_report())
    assert page.startswith("<!doctype html>") and "<style>" in page and "<p>no plots</p>" in page
    assert '<td class="best">0.9000</td>' in page and '<td class="st-missing">MISSING</td>' in page


def test_terminal_tables_show_the_same_numbers():
    console = Console(record=True, width=200)
    rep = _small_report()
    render.render_pivot(rep, console)
    words = " ".join(console.export_text(clear=False).split())  # a narrow table wraps its title
    assert "test accuracy: dataset by strategy" in words
    render.render_summary(rep.cells, console, title="grid g")
    render.render_frame(rep.cells[["cell", "test_acc"]], console, "cells")
    text = console.export_text()
    assert "0.9000" in text
    assert "grid g" in text and "MISSING" in text and "1.2" in text and "1.0k of 2.0k" in text
    assert text.count("—") >= 3  # missing values are a dash in every table


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_html_renders_in_headless_chromium(filled, tmp_path):
    grid, store, _ = filled
    out = tmp_path / "html"
    result = CliRunner().invoke(
        main,
        [
            "report",
            "--grid",
            str(grid),
            "--tracking-uri",
            store,
            "--out",
            str(out),
            "--format",
            "html",
            "--no-mlflow",
        ],
    )
    assert result.exit_code == 0, result.output
    page = out / "report.html"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert "<table>" in dom.stdout and "data:image/png;base64" in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, *flags, "--window-size=1400,3000", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 20_000
    from matplotlib.image import imread

    img = imread(shot)
    # the page is not blank: plots bring many distinct colours, tables many dark (text) pixels
    flat = (img[..., :3] * 255).astype(int).reshape(-1, 3)
    colours = {tuple(c) for c in flat[::7]}
    assert len(colours) > 200
    assert (flat.sum(axis=1) < 200).mean() > 0.005


def test_a_replicated_grids_report_in_every_format(replicated, tmp_path):
    """md, csv, html and tex of a store with seeds: intervals with n, best and ties marked in each
    format's own way, LaTeX escaped, per-epoch means over seeds, the rank diagram on the page."""
    grid, store, values = replicated
    out = tmp_path / "out"
    args = ["report", "--grid", str(grid), "--tracking-uri", store, "--out", str(out), "--no-mlflow"]
    result = CliRunner().invoke(main, [*args, "--format", "md,csv,html,tex"])
    assert result.exit_code == 0, result.output
    md = (out / "report.md").read_text()
    assert "**0.901 ± 0.007 (n=5)**" in md and "(n=5, 9/10 runs)" in md
    configs = pd.read_csv(out / "configurations.csv")
    assert {"n", "mean", "std", "ci_low", "ci_high", "provenance", "test_is_val"} <= set(configs.columns)
    assert len(configs) == 18 and configs["n"].sum() == len(values)
    stats_csv = pd.read_csv(out / "pivot_test_acc_stats.csv")
    assert {"best", "tie", "p_holm", "ci_low", "ci_high"} <= set(stats_csv.columns)
    tex = (out / "report.tex").read_text()
    assert tex.count("\\toprule") >= 3 and "\\usepackage{booktabs}" in tex
    assert "linear\\_probe" in tex and "test\\_resnet" in tex and "\\textbf{0.901 $\\pm$ 0.007 (n=5)}" in tex
    assert "\\underline{0.900 $\\pm$ 0.006 (n=5)}" in tex
    body = tex.split("\\begin{document}")[1]
    assert "_" not in body.replace("\\_", "")  # every underscore escaped
    epochs = pd.read_csv(out / "val_acc_per_epoch.csv", index_col=[0, 1])
    config = "synthetic/test_resnet/finetune/sgd/none"
    curves = [curve for name, (_, _, curve) in values.items() if name.startswith(config + "@")]
    assert epochs.loc[("synthetic", config)].to_numpy() == pytest.approx(np.mean(curves, axis=0))
    page = (out / "report.html").read_text()
    assert "<u>" in page or 'class="tie"' in page
    assert page.count("data:image/png;base64,") >= 5  # curves per dataset, CD-free ranks, pareto, ...


def test_the_run_summary_of_replicates_is_one_row_per_configuration(replicated):
    """What `tlbench run` prints at its end: states, n and mean ± CI per configuration."""
    from synthetic_store import build_report

    grid, store, _ = replicated
    rep = build_report(grid, store)
    console = Console(record=True, width=250)
    render.render_summary(rep.cells, console, title="grid reps", ci="t")
    text = console.export_text()
    assert text.count("/none ") + text.count("/none│") >= 18 and "@s" not in text
    assert "FINISHED 4, FAILED 1" in text and "(n=4)" in text and "±" in text
    # a rerun: replicates finished by an earlier run come back SKIPPED (finished): still results
    cells = rep.cells.copy()
    earlier = cells["status"].eq("FINISHED") & cells["cell"].str.endswith(("@s0", "@s1"))
    cells.loc[earlier, ["status", "reason"]] = ["SKIPPED", "finished"]
    again = Console(record=True, width=250)
    render.render_summary(cells, again, title="grid reps", ci="t")
    assert again.export_text().count("(n=5)") == text.count("(n=5)") > 0


def test_a_trained_grid_with_three_seeds_reports_intervals_and_ties(trained_seeds, tmp_path):
    """Real training, 3 seeds: every entry has an interval over n = 3 and the tie test ran."""
    grid, store, run_output = trained_seeds
    assert "(n=3)" in run_output  # the summary `tlbench run` prints at its end
    out = tmp_path / "out"
    args = ["report", "--grid", str(grid), "--tracking-uri", store, "--out", str(out), "--no-mlflow"]
    result = CliRunner().invoke(main, [*args, "--format", "md,csv"])
    assert result.exit_code == 0, result.output
    entries = pd.read_csv(out / "pivot_test_acc_stats.csv")
    assert (entries["n"] == 3).all() and (entries["ci_low"] <= entries["mean"]).all()
    assert (entries["ci_high"] > entries["ci_low"]).any()  # scratch varies by seed
    assert entries["best"].sum() >= 1 and set(entries["test"].dropna()) <= {"paired t"}
    md = (out / "report.md").read_text()
    assert md.count("(n=3)") >= 2 and "±" in md
