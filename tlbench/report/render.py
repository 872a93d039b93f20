"""The report written out: Markdown and CSV here, one self-contained HTML page (``page``), LaTeX
tables (``latex``) and rich tables in the terminal (``console``).

Writers only format what ``tables``, ``pivots`` and ``configs`` computed, in the words of
``fmt``, so the files, the page and the terminal show the same numbers; the terminal summary
after ``tlbench run`` uses ``render_summary`` too.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tlbench.report import fmt, fmt_transfer
from tlbench.report.console import (
    render_compare,
    render_costs,
    render_frame,
    render_pivot,
    render_ranks,
    render_summary,
    render_transfer,
    render_transferability,
)
from tlbench.report.latex import to_latex
from tlbench.report.page import to_html
from tlbench.report.racing import RACE_NOTE
from tlbench.report.tables import Report, label

__all__ = [
    "render_compare",
    "render_costs",
    "render_frame",
    "render_pivot",
    "render_ranks",
    "render_summary",
    "render_transfer",
    "render_transferability",
    "to_html",
    "to_latex",
    "to_markdown",
    "write",
]
FORMATS = ("md", "csv", "html", "tex")


def _markdown_table(
    df: pd.DataFrame, index: bool = True, best: pd.DataFrame | None = None, tie: pd.DataFrame | None = None
) -> str:
    """A pipe table; values where ``best`` is True (aligned with ``df``'s columns) in bold, where
    ``tie`` is True followed by †."""
    data = df.reset_index() if index else df
    offset = data.shape[1] - df.shape[1]
    head = [label(c) for c in data.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, (_, row) in enumerate(data.iterrows()):
        cells = []
        for j, v in enumerate(row):
            text, k = fmt.number(v, data.columns[j]), j - offset
            if best is not None and k >= 0 and bool(best.iat[i, k]):
                text = f"**{text}**"
            if tie is not None and k >= 0 and bool(tie.iat[i, k]):
                text = f"{text} {fmt.TIE}"
            cells.append(text.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _notes(notes: list[str]) -> str:
    return "\n".join(f"- {n}" for n in notes)


def _pivot_section(rep: Report, val: bool = False) -> list[str]:
    """A pivot with its statement of what the entries are; the spread of collapsed configurations."""
    t = fmt.test_table(rep, val)
    d = fmt.display(t, fmt.test_is_val(rep))
    text = d.text.where(d.winner.eq(""), d.text + " · " + d.winner)
    if val:
        parts = [f"## Best validation {rep.metric}"]
    else:
        parts = [
            f"## Test {rep.metric} ({' × '.join(rep.rows)} by {' × '.join(rep.cols)}; best per row in bold)"
        ]
    parts.append(_markdown_table(text, best=d.best, tie=d.tie))
    if not val:
        notes = fmt.pivot_notes(t, rep)
        parts += [_notes(notes)] if notes else []
        if t.agg == "mean" and len(t.long) and (t.long["k"] > 1).any():
            parts += ["### Spread of the collapsed configurations (min – max of their means)"]
            parts.append(_markdown_table(fmt.spread(t)))
    return parts


def _statistics_sections(rep: Report) -> list[str]:
    """The comparison of one axis and its ranks across datasets and backbones."""
    parts = []
    if not rep.compare.empty:
        parts += [
            f"## Pairwise comparison of {rep.compare_axis} (test {rep.metric})",
            fmt.compare_note(rep.compare_axis),
        ]
        parts.append(_markdown_table(fmt.compare_display(rep.compare), index=False))
    elif rep.compare_note:
        parts += [f"## Pairwise comparison of {rep.compare_axis}", rep.compare_note]
    if rep.ranks is not None:
        parts += [
            f"## Ranks of {rep.compare_axis} across datasets and backbones",
            _notes(fmt.ranks_lines(rep)),
        ]
        ranks = fmt.ranks_frame(rep)
        parts += [_markdown_table(ranks, index=False)] if not ranks.empty else []
        if rep.ranks.nemenyi is not None:
            parts += ["Nemenyi p-values:", _markdown_table(rep.ranks.nemenyi)]
    return parts


def _cost_sections(rep: Report) -> list[str]:
    """The method × cost table, one ranked table per dataset × backbone (its plots are linked
    with the others, at the end)."""
    tables = fmt.cost_tables(rep.costs)
    if not tables:
        return []
    parts = [f"## Method × cost (ranked by test {rep.metric})", fmt.COSTS_NOTE]
    for title, table in tables:
        parts += [f"### {title}", _markdown_table(table, index=False)]
    return parts


def _transfer_sections(rep: Report) -> list[str]:
    """Per dataset with a rank run: its scores beside the results, then how each score agreed."""
    found = fmt_transfer.report_sections(rep)
    if not found:
        return []
    parts = [f"## {fmt_transfer.SECTION_TITLE}"]
    for s in found:
        parts += [f"### {s.dataset}", s.note, _markdown_table(s.scores, index=False)]
        if s.agreement.empty:
            parts.append(f"_no finished {s.against} results to check the scores against yet_")
        else:
            parts += [f"Agreement with `{s.against}`:", _markdown_table(s.agreement, index=False)]
    return [*parts, fmt_transfer.AGREEMENT_NOTE]


def _epoch_sections(rep: Report) -> list[str]:
    """Validation accuracy per epoch, one table per dataset: configurations down, epochs across."""
    parts = ["## Validation accuracy per epoch (mean over seeds)"]
    if rep.epochs.empty:
        return [*parts, "_no finished cells_"]
    for ds, table in fmt.epoch_tables(rep.epochs):
        parts += [f"### {ds}", _markdown_table(table)]
    return parts


def to_markdown(rep: Report) -> str:
    """The report as one Markdown page; plots are linked by file name (they sit beside it)."""
    parts = [f"# tlbench report: grid `{rep.grid}`", fmt.counts_line(rep)]
    if not rep.race.empty:
        parts += [f"## Racing\n\n{RACE_NOTE}", _markdown_table(rep.race, index=False)]
        parts += ["### Raced out", _markdown_table(rep.raced_out, index=False)]
    if not rep.reported.empty:
        parts += ["## Reported elsewhere vs tlbench", _markdown_table(rep.reported, index=False)]
    if not rep.tuned.empty:
        parts += ["## Tuned vs untuned", _markdown_table(rep.tuned, index=False)]
    parts += _pivot_section(rep)
    parts += _statistics_sections(rep)
    parts += _pivot_section(rep, val=True)
    parts += _cost_sections(rep)
    parts += _transfer_sections(rep)
    if fmt.replicated(rep):
        parts += [
            "## Configurations (replicates summarised)",
            _markdown_table(fmt.configs_display(rep), index=False),
        ]
    parts += [f"## Effect of each axis (test {rep.metric} over the cells with that value)"]
    parts += [_markdown_table(rep.effects, index=False)]
    parts += _epoch_sections(rep)
    parts += ["## Cells", _markdown_table(rep.summary, index=False)]
    parts += [f"![{title}]({path.name})" for title, path in rep.plots.items()]
    return "\n\n".join(parts) + "\n"


def _csv_tables(rep: Report) -> dict[str, tuple[pd.DataFrame, bool]]:
    """File name -> (table, whether its index is written): every table of the report as CSV."""
    tables = {
        "cells.csv": (rep.cells.drop(columns=["reason"]).assign(reason=rep.cells["reason"]), False),
        "pivot_test_acc.csv": (rep.pivot, True),
        "pivot_best_val_acc.csv": (rep.pivot_val, True),
        "axis_effects.csv": (rep.effects, False),
        "val_acc_per_epoch.csv": (rep.epochs, True),
    }
    if rep.table is not None:
        tables["pivot_test_acc_stats.csv"] = (rep.table.long, False)
    if not rep.configs.empty:
        tables["configurations.csv"] = (rep.configs, False)
    if not rep.costs.empty:
        tables["method_cost.csv"] = (rep.costs, False)
    tables |= {name: (table, False) for name, table in fmt_transfer.csv_tables(rep).items()}
    if not rep.compare.empty:
        tables[f"compare_{rep.compare_axis}.csv"] = (rep.compare, False)
    if not fmt.ranks_frame(rep).empty:
        tables[f"ranks_{rep.compare_axis}.csv"] = (fmt.ranks_frame(rep), False)
    if not rep.race.empty:
        tables["racing.csv"] = (rep.race, False)
        tables["raced_out.csv"] = (rep.raced_out, False)
    if not rep.reported.empty:
        tables["reported_vs_tlbench.csv"] = (rep.reported, False)
    if not rep.tuned.empty:
        tables["tuned_vs_untuned.csv"] = (rep.tuned, False)
    return tables


def write(rep: Report, out: Path, formats: list[str]) -> list[Path]:
    """Write the report in each format into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    pages = {
        "md": ("report.md", to_markdown),
        "html": ("report.html", to_html),
        "tex": ("report.tex", to_latex),
    }
    for key, (name, render) in pages.items():
        if key in formats:
            written.append(out / name)
            written[-1].write_text(render(rep))
    if "csv" in formats:
        for name, (table, index) in _csv_tables(rep).items():
            table.to_csv(out / name, index=index)
            written.append(out / name)
    return written + list(rep.plots.values())
