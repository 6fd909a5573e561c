"""Every section of docs/RESULTS.md that the docs and docstrings quote by its title exists.

RESULTS.md is assembled by ``benchmarks/run_all.py`` from the pieces' records; a renamed
piece title leaves references elsewhere pointing at nothing. A reference is a quoted title
after ``RESULTS.md,`` or after the word ``section`` (``docs/RESULTS.md, "Compile once per
grid"``); it must begin one of the page's ``## `` headings.
"""
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
_REF = re.compile(r'(?:RESULTS\.md,?|section)\s+\\?"([^"\\{]{3,160}?)\\?"')


def _headings() -> list[str]:
    return [ln[3:].strip() for ln in (REPO / "docs" / "RESULTS.md").read_text().splitlines()
            if ln.startswith("## ")]


def _sources() -> list[pathlib.Path]:
    return [REPO / "README.md",
            *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "RESULTS.md"),
            *sorted((REPO / "fedjax_grid").rglob("*.py")),
            *sorted((REPO / "benchmarks").glob("*.py")),
            *sorted((REPO / "notebooks").glob("*.py"))]


def references(text: str) -> list[str]:
    """The quoted section titles of ``text``, lines joined (comment markers dropped)."""
    joined = re.sub(r"\n\s*(?:#:?\s*)?", " ", text)
    return [re.sub(r"\s+", " ", m.group(1)).strip() for m in _REF.finditer(joined)]


def test_references_are_found_across_lines_and_comments():
    text = ('see docs/RESULTS.md, "Modelled vs\n    emulated grid"; and\n'
            '#: section "The grid\'s own\n#: CPU"')
    assert references(text) == ["Modelled vs emulated grid", "The grid's own CPU"]


@pytest.mark.skipif(not (REPO / "docs" / "RESULTS.md").is_file(), reason="no docs/RESULTS.md")
def test_every_quoted_results_section_exists():
    heads = _headings()
    missing = [(str(p.relative_to(REPO)), t) for p in _sources()
               for t in references(p.read_text()) if not any(h.startswith(t) for h in heads)]
    assert not missing, f"references to sections RESULTS.md does not have: {missing}"
    assert len(heads) > 20
