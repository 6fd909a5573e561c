"""``python -m pytest tests/browser`` runs the browser test although it is marked ``slow``.

The default options deselect slow tests (``-m 'not slow'`` in pyproject.toml), which
would leave nothing to run here (exit code 5). When every path given on the command line
lies in this folder, that default is dropped; ``python -m pytest`` (the whole suite) still
leaves this test out, and an explicit ``-m`` other than the default is kept.
"""
import pathlib

import pytest

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_MARKEXPR = "not slow"


def _within_here(arg: str, root: pathlib.Path) -> bool:
    path = pathlib.Path(arg.split("::")[0])
    path = (path if path.is_absolute() else root / path).resolve()
    return path == HERE or HERE in path.parents


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    root = pathlib.Path(str(config.invocation_params.dir))
    args = [a for a in config.args if not a.startswith("-")]
    if config.option.markexpr == DEFAULT_MARKEXPR and args and \
            all(_within_here(a, root) for a in args):
        config.option.markexpr = ""
