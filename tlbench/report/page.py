"""The report as one self-contained HTML page: tables, the notes that say what their numbers are,
and every plot embedded as base64 PNG (the page can be mailed or attached to a run alone)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from tlbench.figures.costs import COST_TITLE
from tlbench.figures.transferability import TRANSFER_TITLE
from tlbench.report import fmt, fmt_transfer
from tlbench.report.racing import RACE_NOTE
from tlbench.report.tables import Report, label

CSS = """
body{font-family:system-ui,-apple-system,sans-serif;margin:2rem;color:#222;max-width:1400px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.8rem;margin:.5rem 0}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
td.best{font-weight:bold;background:#d8f5d0}td.tie{text-decoration:underline}
td.st-missing{color:#999}td.st-failed,td.st-killed{color:#b00}td.st-running{color:#b80}
ul.notes{font-size:.8rem;color:#444;max-width:60rem}small{color:#666}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0}.scroll{overflow-x:auto}
"""


def _html_table(
    df: pd.DataFrame,
    index: bool = True,
    best: pd.DataFrame | None = None,
    status_col: bool = False,
    tie: pd.DataFrame | None = None,
    small: pd.DataFrame | None = None,
) -> str:
    """An HTML table; ``best``/``tie`` cells and (with ``status_col``) each status get a CSS class,
    ``small`` adds a second line (e.g. the configuration ``--agg best`` chose)."""
    data = df.reset_index() if index else df
    offset = data.shape[1] - df.shape[1]
    head = "".join(f"<th>{html.escape(label(c))}</th>" for c in data.columns)
    out = [f"<table><thead><tr>{head}</tr></thead><tbody>"]
    for i, (_, row) in enumerate(data.iterrows()):
        tds = []
        for j, v in enumerate(row):
            cls, k = [], j - offset
            if best is not None and k >= 0 and bool(best.iat[i, k]):
                cls.append("best")
            if tie is not None and k >= 0 and bool(tie.iat[i, k]):
                cls.append("tie")
            if status_col and data.columns[j] == "status":
                cls.append(f"st-{str(v).lower()}")
            attr = f' class="{" ".join(cls)}"' if cls else ""
            text = html.escape(fmt.number(v, data.columns[j]))
            if small is not None and k >= 0 and small.iat[i, k]:
                text += f"<br><small>{html.escape(str(small.iat[i, k]))}</small>"
            tds.append(f"<td{attr}>{text}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _scroll(table: str) -> str:
    return f'<div class="scroll">{table}</div>'


def _notes(notes: list[str]) -> str:
    return (
        '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>" if notes else ""
    )


def _folded(summary: str, body: str) -> str:
    """A long table behind a click: the page opens on the conclusions, not on 1,728 rows."""
    return f"<details><summary>{html.escape(summary)}</summary>{body}</details>"


def _pivot(rep: Report, val: bool = False) -> list[str]:
    t = fmt.test_table(rep, val)
    d = fmt.display(t, fmt.test_is_val(rep))
    if val:
        head = f"<h2>Best validation {html.escape(rep.metric)}</h2>"
    else:
        axes = f"{' × '.join(rep.rows)} by {' × '.join(rep.cols)}"
        head = f"<h2>Test {html.escape(rep.metric)} ({html.escape(axes)}; best per row highlighted)</h2>"
    parts = [head, _scroll(_html_table(d.text, best=d.best, tie=d.tie, small=d.winner))]
    if not val:
        parts.append(_notes(fmt.pivot_notes(t, rep)))
        if t.agg == "mean" and len(t.long) and (t.long["k"] > 1).any():
            parts += ["<h3>Spread of the collapsed configurations (min – max of their means)</h3>"]
            parts.append(_scroll(_html_table(fmt.spread(t))))
    return parts


def _statistics(rep: Report) -> list[str]:
    axis = html.escape(rep.compare_axis)
    parts = []
    if not rep.compare.empty:
        parts += [
            f"<h2>Pairwise comparison of {axis} (test {html.escape(rep.metric)})</h2>",
            _notes([fmt.compare_note(rep.compare_axis)]),
        ]
        parts.append(_html_table(fmt.compare_display(rep.compare), index=False))
    elif rep.compare_note:
        parts += [f"<h2>Pairwise comparison of {axis}</h2>", _notes([rep.compare_note])]
    if rep.ranks is not None:
        parts += [f"<h2>Ranks of {axis} across datasets and backbones</h2>", _notes(fmt.ranks_lines(rep))]
        ranks = fmt.ranks_frame(rep)
        parts += [_html_table(ranks, index=False)] if not ranks.empty else []
        if rep.ranks.nemenyi is not None:
            parts += ["<p>Nemenyi p-values:</p>", _html_table(rep.ranks.nemenyi)]
        parts += [_img(t, p) for t, p in rep.plots.items() if t.startswith("critical difference")]
    return parts


def _costs(rep: Report) -> list[str]:
    """The method × cost tables, then their Pareto plots (kept out of the page's Plots section)."""
    tables = fmt.cost_tables(rep.costs)
    if not tables:
        return []
    parts = [f"<h2>Method × cost (ranked by test {html.escape(rep.metric)})</h2>", _notes([fmt.COSTS_NOTE])]
    for title, table in tables:
        parts += [f"<h3>{html.escape(title)}</h3>", _scroll(_html_table(table, index=False))]
    parts += [_img(t, p) for t, p in rep.plots.items() if t.startswith(COST_TITLE)]
    return parts


def _transfer(rep: Report) -> list[str]:
    """Per dataset with a rank run: scores beside results, the agreement table, its scatter."""
    found = fmt_transfer.report_sections(rep)
    if not found:
        return []
    parts = [f"<h2>{html.escape(fmt_transfer.SECTION_TITLE)}</h2>"]
    for s in found:
        parts += [f"<h3>{html.escape(s.dataset)}</h3>", _notes([s.note])]
        parts.append(_scroll(_html_table(s.scores, index=False)))
        if s.agreement.empty:
            parts.append(
                f"<p>no finished {html.escape(s.against)} results to check the scores against yet</p>"
            )
        else:
            parts += [
                f"<p>Agreement with {html.escape(s.against)}:</p>",
                _html_table(s.agreement, index=False),
            ]
        title = f"{TRANSFER_TITLE}: {s.dataset}"
        parts += [_img(title, rep.plots[title])] if title in rep.plots else []
    return [*parts, _notes([fmt_transfer.AGREEMENT_NOTE])]


def _img(title: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'


def _details(rep: Report) -> list[str]:
    """The long tables: configurations, per-epoch accuracy, every cell (folded when long)."""
    parts = []
    if fmt.replicated(rep):
        body = _scroll(_html_table(fmt.configs_display(rep), index=False))
        parts += [
            "<h2>Configurations (replicates summarised)</h2>",
            _folded(f"{len(rep.configs)} configurations", body),
        ]
    parts += ["<h2>Effect of each axis</h2>", _html_table(rep.effects, index=False)]
    parts += ["<h2>Validation accuracy per epoch (mean over seeds)</h2>"]
    if rep.epochs.empty:
        parts.append("<p>no finished cells</p>")
    for ds, table in fmt.epoch_tables(rep.epochs) if not rep.epochs.empty else []:
        parts.append(_folded(f"{ds}: {len(table)} configurations", _scroll(_html_table(table))))
    cells = _scroll(_html_table(rep.summary, index=False, status_col=True))
    parts += [
        "<h2>Cells</h2>",
        cells if len(rep.summary) <= 60 else _folded(f"{len(rep.summary)} cells", cells),
    ]
    return parts


def to_html(rep: Report) -> str:
    """One self-contained page: tables plus plots embedded as base64 PNG."""
    grid = html.escape(rep.grid)
    sections = [
        f"<h1>tlbench report: grid <code>{grid}</code></h1><p>{html.escape(fmt.counts_line(rep))}</p>"
    ]
    if not rep.race.empty:
        sections += [
            "<h2>Racing</h2>",
            f"<p>{html.escape(RACE_NOTE)}</p>",
            _html_table(rep.race, index=False),
        ]
        sections += ["<h3>Raced out</h3>", _html_table(rep.raced_out, index=False)]
    if not rep.reported.empty:
        sections += ["<h2>Reported elsewhere vs tlbench</h2>", _html_table(rep.reported, index=False)]
    if not rep.tuned.empty:
        sections += ["<h2>Tuned vs untuned</h2>", _html_table(rep.tuned, index=False)]
    sections += _pivot(rep) + _statistics(rep) + _pivot(rep, val=True) + _costs(rep) + _transfer(rep)
    sections += _details(rep)
    shown = ("critical difference", COST_TITLE, TRANSFER_TITLE)  # embedded in their sections
    imgs = "".join(_img(t, p) for t, p in rep.plots.items() if not t.startswith(shown))
    sections += ["<h2>Plots</h2>", imgs or "<p>no plots</p>"]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>tlbench report: {grid}</title>"
        f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>"
    )
