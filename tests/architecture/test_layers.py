"""The package's layers, enforced by import-linter (contracts in pyproject.toml).

``lint-imports`` checks every import of fedjax_grid against the contracts: the layers
(cli and widgets over the runner, over plots, over experiments and the grid, over
training and the hazard models, over the pure cores, over the utilities), the grid
knowing nothing of experiments, models/partitions/federated algorithms free of the
grid, and no cycles between top-level subpackages.
"""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _lint_imports() -> list[str]:
    exe = shutil.which("lint-imports") or os.path.join(os.path.dirname(sys.executable),
                                                       "lint-imports")
    if not os.path.exists(exe):
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    return [exe, "--config", str(REPO / "pyproject.toml"), "--no-cache"]


def test_import_contracts_are_kept():
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(_lint_imports(), cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout and "KEPT" in r.stdout
