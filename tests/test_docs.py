"""The documentation: a short README that points at every docs page, and the quickstart notebook,
executed as a user would run it (a kernel, its own working folder)."""

from __future__ import annotations

import re

import pytest
from helpers import REPO

README_LINES = 200


def test_the_readme_is_short_and_every_docs_page_is_linked_from_it():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= README_LINES
    linked = set(re.findall(r"\(docs/([\w.-]+)\)", text))
    pages = {p.name for p in (REPO / "docs").iterdir() if p.suffix in (".md", ".ipynb")}
    assert pages <= linked, f"docs pages the README does not point to: {sorted(pages - linked)}"
    assert linked <= pages, f"README links to missing pages: {sorted(linked - pages)}"
    assert "tlbench run --grid" in text and "pytest" in text


@pytest.mark.slow
def test_the_quickstart_notebook_runs_and_shows_its_results(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(REPO / "docs" / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the heatmap, inline
    texts = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "http://127.0.0.1:5000/#/experiments/" in texts and "FINISHED" in texts
    assert (tmp_path / "quickstart-report" / "report.md").exists()
