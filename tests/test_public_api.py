"""The public API: ``fedjax_grid`` exports what notebooks and users call, lazily, each
name documented; the notebooks import from ``fedjax_grid`` only."""
import inspect
import pathlib
import re
import subprocess
import sys

import pytest

import fedjax_grid

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", [n for n in fedjax_grid.__all__ if n != "__version__"])
def test_every_public_name_resolves_and_is_documented(name):
    obj = getattr(fedjax_grid, name)
    doc = inspect.getdoc(obj)
    assert doc and doc.strip(), f"fedjax_grid.{name} has no docstring"


def test_importing_the_package_is_cheap():
    code = ("import sys, fedjax_grid; heavy = [m for m in ('jax', 'distributed', 'pandas', "
            "'ipywidgets') if m in sys.modules]; print(heavy); assert not heavy, heavy; "
            "print(fedjax_grid.__version__)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fedjax_grid.nope  # noqa: B018


def test_notebooks_import_only_from_the_package():
    deep = re.compile(r"^\s*(?:from\s+fedjax_grid\.[\w.]+\s+import|import\s+fedjax_grid\.)", re.M)
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py")):
        hits = [m.group(0).strip() for m in deep.finditer(path.read_text())]
        assert not hits, f"{path.name} imports deep modules: {hits}"
