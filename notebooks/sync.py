"""Write the notebooks of this folder (outputs stripped) from their jupytext sources.

Each ``NN_name.py`` here is the source of ``NN_name.ipynb``: a jupytext percent-format
script (``# %%`` code cells, ``# %% [markdown]`` cells, one ``# %% tags=["parameters"]``
cell). Edit the ``.py``, then

    python notebooks/sync.py            # (re)write every .ipynb from its .py
    python notebooks/sync.py --check    # exit 1 when an .ipynb differs from its .py

The output is deterministic (stable cell ids, fixed metadata, no outputs), so the
tests compare the committed notebooks with what this writes. The pairing is also
declared in ``jupytext.toml`` for Jupyter's jupytext extension; ``jupytext --sync``
writes random cell ids, so run this script before committing.
"""
from __future__ import annotations

import pathlib
import sys

import jupytext
import nbformat

HERE = pathlib.Path(__file__).resolve().parent

#: The notebooks, in order: one ``<name>.py`` source and one ``<name>.ipynb`` each.
NOTEBOOKS = sorted(p.stem for p in HERE.glob("[0-9][0-9]_*.py"))

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``<name>.ipynb`` as written from ``<name>.py``."""
    nb = jupytext.read(HERE / f"{name}.py", fmt="py:percent")
    nb.metadata = nbformat.NotebookNode(kernelspec=dict(KERNELSPEC),
                                        language_info={"name": "python"})
    nb.nbformat, nb.nbformat_minor = 4, 5
    for i, cell in enumerate(nb.cells):  # stable ids: rewriting gives identical files
        cell["id"] = f"{name[:2]}-{i:02d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(nb)
    return nb


def text_of(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check = "--check" in argv
    stale = []
    for name in NOTEBOOKS:
        path = HERE / f"{name}.ipynb"
        text = text_of(build(name))
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        elif not path.exists() or path.read_text() != text:
            path.write_text(text)
            print("wrote", path)
    if stale:
        print("out of date (run python notebooks/sync.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
