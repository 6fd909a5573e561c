"""Write the notebooks of this folder (outputs stripped) from their jupytext sources.

Each ``NN_name.py`` here is the source of ``NN_name.ipynb``: a jupytext percent-format
script (``# %%`` code cells, ``# %% [markdown]`` cells, one ``# %% tags=["parameters"]``
cell, no metadata header). Edit the ``.py``, then

    python notebooks/sync.py                  # (re)write every .ipynb from its .py
    python notebooks/sync.py --check          # exit 1 when an .ipynb's cells differ from its .py
    python notebooks/sync.py --install        # once per clone: the git filter and the
                                              # Jupyter extension (below)

The committed form of a notebook (``fedjax_grid.jupyter_hygiene.committed_form``: no
outputs, no execution counts, cell ids 0, 1, ..., only the kernelspec as metadata) is
exactly what the git filter commits (nbstripout's stripping, via ``python -m
fedjax_grid.jupyter_hygiene``; ``.gitattributes`` names it for ``*.ipynb``,
``--install`` configures it). Git compares sizes before
contents, so a notebook saved with outputs would still be listed by ``git status``:
fedjax_grid's Jupyter server extension (enabled by ``--install`` in this environment)
saves the notebooks of this folder in their committed form and writes the full
notebook, outputs and widget state, to ``../runs/notebooks/``. After Run All and save,
``git status`` is clean. ``--check`` and the tests compare the committed form: a
notebook you ran elsewhere still passes, one whose cells differ from its ``.py`` does
not. The pairing is also declared in ``jupytext.toml`` for Jupyter's jupytext
extension, which rewrites the ``.py`` on save (byte-identical while the cells are
unchanged: the ``.py`` files carry no metadata header).
"""
from __future__ import annotations

import pathlib
import subprocess
import sys

import jupytext
import nbformat

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))   # this checkout's fedjax_grid, wherever it is installed
from fedjax_grid.jupyter_hygiene import committed_form  # noqa: E402

#: The notebooks, in order: one ``<name>.py`` source and one ``<name>.ipynb`` each.
NOTEBOOKS = sorted(p.stem for p in HERE.glob("[0-9][0-9]_*.py"))


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` in its committed form (what the git filter commits)."""
    return committed_form(nb)


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``<name>.ipynb`` as written from ``<name>.py`` (its committed form)."""
    nb = jupytext.read(HERE / f"{name}.py", fmt="py:percent")
    for cell in nb.cells:
        cell["id"] = "x"   # numbered 0, 1, ... by committed_form, as the filter numbers them
    nb = committed_form(nb)
    nbformat.validate(nb)
    return nb


def text_of(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def stripped_text(path: pathlib.Path) -> str:
    """The committed form of the notebook file ``path`` (outputs and run metadata stripped)."""
    return text_of(strip(nbformat.read(path, as_version=4)))


def install_filter(repo: pathlib.Path = HERE.parent) -> None:
    """Configure this clone's git filter for notebooks (``git config --local``): nbstripout's
    stripping plus the kernelspec, as ``fedjax_grid.jupyter_hygiene.committed_form``."""
    python = pathlib.PurePath(sys.executable).as_posix()
    command = f'"{python}" -m fedjax_grid.jupyter_hygiene'
    settings = {"filter.notebooks.clean": command, "filter.notebooks.smudge": "cat",
                "filter.notebooks.required": "true", "diff.notebooks.textconv": command}
    for key, value in settings.items():
        subprocess.run(["git", "config", "--local", key, value], cwd=repo, check=True)
    print(f"git filter 'notebooks' installed in {repo} (.gitattributes applies it to *.ipynb)")


def enable_extension() -> None:
    """Enable fedjax_grid's Jupyter server extension in this Python environment."""
    subprocess.run([sys.executable, "-m", "jupyter", "server", "extension", "enable",
                    "--sys-prefix", "fedjax_grid.jupyter_hygiene"], check=True)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--install" in argv or "--install-filter" in argv:
        install_filter()
        if "--install" in argv:
            enable_extension()
        return 0
    check = "--check" in argv
    stale = []
    for name in NOTEBOOKS:
        path = HERE / f"{name}.ipynb"
        text = text_of(build(name))
        if path.exists() and stripped_text(path) == text:
            continue   # up to date (outputs of a run are kept)
        if check:
            stale.append(path.name)
        else:
            path.write_text(text)
            print("wrote", path)
    if stale:
        print("out of date (run python notebooks/sync.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
