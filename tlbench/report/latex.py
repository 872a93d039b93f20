"""The report's tables as a LaTeX document (``--format tex``): booktabs rules, ``mean ± CI``, the
best of each row in bold and its statistical ties underlined, ready to paste into a paper.

Every text from the store (cell names, axis labels) is escaped: a grid's ``linear_probe`` or
``digits-10pct`` must not break the document.
"""

from __future__ import annotations

import pandas as pd

from tlbench.report import fmt, fmt_transfer
from tlbench.report.tables import Report, label

SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "†": r"$^\dagger$",
    "‡": r"$^\ddagger$",
    "§": r"\S{}",
    "—": "---",
    "–": "--",
    "−": "$-$",
    "·": r"$\cdot$",
    "×": r"$\times$",
    "α": r"$\alpha$",
    "χ": r"$\chi$",
    "τ": r"$\tau$",
    "²": r"$^2$",
}
PREAMBLE = r"""\documentclass{article}
\usepackage[utf8]{inputenc}
\usepackage[margin=1.5cm,landscape]{geometry}
\usepackage{booktabs}
\begin{document}
"""


def escape(text: object) -> str:
    """Text as LaTeX typesets it literally (the characters TeX treats specially, and the report's
    symbols, replaced)."""
    return "".join(SPECIAL.get(ch, ch) for ch in str(text))


def tabular(
    df: pd.DataFrame,
    *,
    index: bool = True,
    best: pd.DataFrame | None = None,
    tie: pd.DataFrame | None = None,
) -> str:
    """A booktabs ``tabular``: labels left, numbers right; ``best`` bold, ``tie`` underlined."""
    data = df.reset_index() if index else df
    offset = data.shape[1] - df.shape[1]
    spec = "l" * max(offset, 1) + "r" * (data.shape[1] - max(offset, 1))
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    lines.append(" & ".join(escape(label(c)) for c in data.columns) + r" \\")
    lines.append(r"\midrule")
    for i, (_, row) in enumerate(data.iterrows()):
        cells = []
        for j, v in enumerate(row):
            text, k = escape(fmt.number(v, data.columns[j])), j - offset
            if best is not None and k >= 0 and bool(best.iat[i, k]):
                text = rf"\textbf{{{text}}}"
            if tie is not None and k >= 0 and bool(tie.iat[i, k]):
                text = rf"\underline{{{text}}}"
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def _table(body: str, caption: str) -> str:
    return "\n".join(
        [
            r"\begin{table}[ht]",
            r"\centering",
            r"\small",
            body,
            rf"\caption{{{escape(caption)}}}",
            r"\end{table}",
        ]
    )


def _pivot(rep: Report) -> str:
    t = fmt.test_table(rep)
    d = fmt.display(t, fmt.test_is_val(rep))
    text = d.text.where(d.winner.eq(""), d.text + " · " + d.winner)
    caption = f"Test {rep.metric}, {' × '.join(rep.rows)} by {' × '.join(rep.cols)}. " + " ".join(
        fmt.pivot_notes(t, rep)
    )
    return _table(tabular(text, best=d.best, tie=d.tie), caption)


def to_latex(rep: Report) -> str:
    """A compilable document (article, booktabs): the pivot, the comparison, the ranks, the costs,
    the transferability scores and their agreement."""
    parts = [
        PREAMBLE,
        rf"\section*{{tlbench report: grid {escape(rep.grid)}}}",
        escape(fmt.counts_line(rep)),
        _pivot(rep),
    ]
    if not rep.compare.empty:
        body = tabular(fmt.compare_display(rep.compare), index=False)
        parts.append(
            _table(body, f"Pairwise comparison of {rep.compare_axis}. {fmt.compare_note(rep.compare_axis)}")
        )
    ranks = fmt.ranks_frame(rep)
    if not ranks.empty:
        parts.append(_table(tabular(ranks, index=False), " ".join(fmt.ranks_lines(rep))))
    for title, table in fmt.cost_tables(rep.costs):
        parts.append(_table(tabular(table, index=False), f"Method × cost, {title}. {fmt.COSTS_NOTE}"))
    for t in fmt_transfer.report_sections(rep):
        parts.append(_table(tabular(t.scores, index=False), f"Transferability scores, {t.dataset}. {t.note}"))
        if not t.agreement.empty:
            caption = f"Agreement of the scores with {t.against}, {t.dataset}. {fmt_transfer.AGREEMENT_NOTE}"
            parts.append(_table(tabular(t.agreement, index=False), caption))
    parts.append(r"\end{document}")
    return "\n\n".join(parts) + "\n"
