"""The report written out: Markdown, CSV and one self-contained HTML page (plots embedded), and
rich tables in the terminal.

Renderers only format what ``tables`` computed, so the files, the page and the terminal show the
same numbers; the terminal summary after ``tlbench run`` uses ``render_summary`` too.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from tlbench.report.tables import Report, best_mask, label

SUMMARY_COLUMNS = ["cell", "status", "test_acc", "best_val_acc", "best_epoch", "train_time_s", "trainable"]
INT_COLUMNS = {"epoch", "epochs", "best_epoch", "count", "params_total", "params_trainable"}


def _fmt(v: Any, column: Any = None) -> str:
    """One value as the files show it: a dash for missing, counts whole, accuracies to 4 places."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float) and column in INT_COLUMNS:
        return f"{int(v):,}"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
    return str(v)


def _markdown_table(df: pd.DataFrame, index: bool = True, best: pd.DataFrame | None = None) -> str:
    """A pipe table; values where ``best`` is True (aligned with ``df``'s columns) in bold."""
    data = df.reset_index() if index else df
    head = [label(c) for c in data.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, (_, row) in enumerate(data.iterrows()):
        cells = []
        for j, v in enumerate(row):
            text = _fmt(v, data.columns[j])
            k = j - (data.shape[1] - df.shape[1])
            if best is not None and k >= 0 and bool(best.iat[i, k]):
                text = f"**{text}**"
            cells.append(text.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_markdown(rep: Report) -> str:
    """The report as one Markdown page; plots are linked by file name (they sit beside it)."""
    counts = ", ".join(f"{k} {v}" for k, v in rep.status_counts().items())
    parts = [
        f"# tlbench report: grid `{rep.grid}`",
        f"{len(rep.cells)} cells: {counts}.",
        f"## Test accuracy ({' × '.join(rep.rows)} by {' × '.join(rep.cols)}; best per row in bold)",
        _markdown_table(rep.pivot, best=best_mask(rep.pivot)),
        "## Best validation accuracy",
        _markdown_table(rep.pivot_val, best=best_mask(rep.pivot_val)),
        "## Effect of each axis (test accuracy over the cells with that value)",
        _markdown_table(rep.effects, index=False),
        "## Validation accuracy per epoch",
        _markdown_table(rep.epochs) if not rep.epochs.empty else "_no finished cells_",
        "## Cells",
        _markdown_table(rep.summary, index=False),
    ]
    if not rep.tuned.empty:
        parts[2:2] = ["## Tuned vs untuned", _markdown_table(rep.tuned, index=False)]
    if not rep.reported.empty:
        parts[2:2] = ["## Reported elsewhere vs tlbench", _markdown_table(rep.reported, index=False)]
    for title, path in rep.plots.items():
        parts.append(f"![{title}]({path.name})")
    return "\n\n".join(parts) + "\n"


def _html_table(
    df: pd.DataFrame, index: bool = True, best: pd.DataFrame | None = None, status_col: bool = False
) -> str:
    """An HTML table; ``best`` cells and (with ``status_col``) each status get a CSS class."""
    data = df.reset_index() if index else df
    offset = data.shape[1] - df.shape[1]
    out = [
        "<table><thead><tr>"
        + "".join(f"<th>{html.escape(label(c))}</th>" for c in data.columns)
        + "</tr></thead><tbody>"
    ]
    for i, (_, row) in enumerate(data.iterrows()):
        tds = []
        for j, v in enumerate(row):
            cls = []
            k = j - offset
            if best is not None and k >= 0 and bool(best.iat[i, k]):
                cls.append("best")
            if status_col and data.columns[j] == "status":
                cls.append(f"st-{str(v).lower()}")
            attr = f' class="{" ".join(cls)}"' if cls else ""
            tds.append(f"<td{attr}>{html.escape(_fmt(v, data.columns[j]))}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


CSS = """
body{font-family:system-ui,-apple-system,sans-serif;margin:2rem;color:#222;max-width:1400px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.8rem;margin:.5rem 0}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
td.best{font-weight:bold;background:#d8f5d0}
td.st-missing{color:#999}td.st-failed,td.st-killed{color:#b00}td.st-running{color:#b80}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0}.scroll{overflow-x:auto}
"""


def to_html(rep: Report) -> str:
    """One self-contained page: tables plus plots embedded as base64 PNG."""
    counts = ", ".join(f"{k} {v}" for k, v in rep.status_counts().items())
    imgs = "".join(
        f'<h3>{html.escape(t)}</h3><img alt="{html.escape(t)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}">'
        for t, p in rep.plots.items()
    )
    sections = [
        f"<h1>tlbench report: grid <code>{html.escape(rep.grid)}</code></h1><p>{len(rep.cells)} cells: {html.escape(counts)}.</p>",
        f"<h2>Test accuracy ({html.escape(' × '.join(rep.rows))} by {html.escape(' × '.join(rep.cols))}; best per row highlighted)</h2>",
        f'<div class="scroll">{_html_table(rep.pivot, best=best_mask(rep.pivot))}</div>',
        "<h2>Best validation accuracy</h2>",
        f'<div class="scroll">{_html_table(rep.pivot_val, best=best_mask(rep.pivot_val))}</div>',
        "<h2>Effect of each axis</h2>",
        _html_table(rep.effects, index=False),
        "<h2>Validation accuracy per epoch</h2>",
        f'<div class="scroll">{_html_table(rep.epochs)}</div>'
        if not rep.epochs.empty
        else "<p>no finished cells</p>",
        "<h2>Cells</h2>",
        f'<div class="scroll">{_html_table(rep.summary, index=False, status_col=True)}</div>',
        "<h2>Plots</h2>",
        imgs or "<p>no plots</p>",
    ]
    if not rep.tuned.empty:
        sections[1:1] = ["<h2>Tuned vs untuned</h2>", _html_table(rep.tuned, index=False)]
    if not rep.reported.empty:
        sections[1:1] = ["<h2>Reported elsewhere vs tlbench</h2>", _html_table(rep.reported, index=False)]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>tlbench report: {html.escape(rep.grid)}</title>"
        f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>"
    )


def write(rep: Report, out: Path, formats: list[str]) -> list[Path]:
    """Write the report in each format into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if "md" in formats:
        written.append(out / "report.md")
        written[-1].write_text(to_markdown(rep))
    if "html" in formats:
        written.append(out / "report.html")
        written[-1].write_text(to_html(rep))
    if "csv" in formats:
        tables = {
            "cells.csv": rep.cells.drop(columns=["reason"]).assign(reason=rep.cells["reason"]),
            "pivot_test_acc.csv": rep.pivot,
            "pivot_best_val_acc.csv": rep.pivot_val,
            "axis_effects.csv": rep.effects,
            "val_acc_per_epoch.csv": rep.epochs,
        }
        if not rep.reported.empty:
            tables["reported_vs_tlbench.csv"] = rep.reported
        if not rep.tuned.empty:
            tables["tuned_vs_untuned.csv"] = rep.tuned
        for name, table in tables.items():
            path = out / name
            index = name.startswith(("pivot", "val_acc"))
            table.to_csv(path, index=index)
            written.append(path)
    return written + list(rep.plots.values())


def render_pivot(rep: Report, console: Console) -> None:
    """The test-accuracy pivot in the terminal, best per row bold."""
    table = Table(title=f"test accuracy: {' × '.join(rep.rows)} by {' × '.join(rep.cols)}")
    for name in rep.rows:
        table.add_column(name)
    for c in rep.pivot.columns:
        table.add_column(label(c), justify="right")
    best = best_mask(rep.pivot)
    for i, (key, row) in enumerate(rep.pivot.iterrows()):
        keys = list(key) if isinstance(key, tuple) else [key]
        vals = []
        for j, v in enumerate(row):
            text = _fmt(v)
            vals.append(f"[bold green]{text}[/]" if bool(best.iat[i, j]) else text)
        table.add_row(*map(str, keys), *vals)
    console.print(table)


def render_frame(df: pd.DataFrame, console: Console, title: str) -> None:
    """Any small table in the terminal, formatted like the files."""
    table = Table(title=title)
    for c in df.columns:
        table.add_column(str(c), justify="left" if df[c].dtype == object else "right")
    for _, row in df.iterrows():
        table.add_row(*(_fmt(v, c) for c, v in row.items()))
    console.print(table)


def render_summary(df: pd.DataFrame, console: Console, title: str = "results") -> None:
    """A rich table of the summary; the best test accuracy per dataset is bold."""
    table = Table(title=title, show_lines=False)
    for col in SUMMARY_COLUMNS:
        table.add_column(col, justify="left" if col in ("cell", "status", "trainable") else "right")
    best: dict[str, float] = {}
    if not df.empty and "test_acc" in df:
        for ds, group in df.groupby("dataset"):
            vals = group["test_acc"].dropna()
            if len(vals):
                best[str(ds)] = float(vals.max())
    for _, row in df.iterrows():
        table.add_row(*(_summary_text(row, col, best) for col in SUMMARY_COLUMNS))
    console.print(table)


def _summary_text(row: pd.Series, col: str, best: dict[str, float]) -> str:
    """One value of the terminal summary, with rich markup (status colours, best in bold)."""
    v = row.get(col)
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "—"
    if col in ("test_acc", "best_val_acc"):
        text = f"{v:.4f}"
        if col == "test_acc" and best.get(str(row["dataset"])) == v:
            text = f"[bold green]{text}[/]"
        return text
    if col == "best_epoch":
        return str(int(v))
    if col == "train_time_s":
        return f"{v:.1f}"
    if col == "status":
        color = {"FINISHED": "green", "SKIPPED": "cyan", "FAILED": "red", "KILLED": "yellow"}.get(v, "white")
        return f"[{color}]{v}[/]" + (f" ({row['reason']})" if row.get("reason") else "")
    return str(v)
