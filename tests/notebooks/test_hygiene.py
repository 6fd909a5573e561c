"""Notebooks do not dirty the repository: a run-and-saved notebook leaves ``git status`` clean.

Real parts: a real git repository holding the repository's notebooks folder, the real
Jupyter contents manager that JupyterLab saves through (jupytext's, around Jupyter's
file manager) with fedjax_grid's save hook configured as its extension configures it,
and nbstripout's git filter configured by ``notebooks/sync.py --install-filter``. The
"run" notebook carries what JupyterLab and a kernel add (outputs, execution counts,
widget state, language_info, jupytext's metadata, another kernel display name); the
real-browser version of this is tests/browser.
"""
import asyncio
import base64
import json
import shutil
import subprocess
import sys

import nbformat
import pytest

from tests.notebooks.nbrun import NOTEBOOKS, REPO

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
NAME = "01_quickstart"


def _env() -> dict:
    """This checkout's fedjax_grid for subprocesses (sync.py imports it)."""
    import os
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}


def _git(repo, *args) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def repo(tmp_path):
    """A git repository with the notebooks folder, .gitattributes and .gitignore, committed."""
    root = tmp_path / "repo"
    shutil.copytree(NOTEBOOKS, root / "notebooks",
                    ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "runs"))
    for name in (".gitattributes", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qm", "notebooks")
    return root


def run_notebook_like_jupyterlab(path) -> nbformat.NotebookNode:
    """The notebook at ``path`` as JupyterLab saves it after Run All: outputs and all."""
    nb = nbformat.read(path, as_version=4)
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 64).decode()
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = i + 1
        cell.metadata["trusted"] = True
        cell.metadata["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"cell {i}\n"),
                        nbformat.v4.new_output("display_data", data={"image/png": png,
                                                                     "text/plain": "<Figure>"})]
    nb.metadata["kernelspec"]["display_name"] = "Python 3 (my env)"
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7",
                                    "codemirror_mode": {"name": "ipython", "version": 3}}
    nb.metadata["jupytext"] = {"notebook_metadata_filter": "-all", "cell_metadata_filter": "tags"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def _jupyter_contents_manager(root):
    """The contents manager JupyterLab saves through here: jupytext's around Jupyter's,
    configured with fedjax_grid's pre-save hook as its server extension configures it."""
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
    from jupytext.async_contentsmanager import build_async_jupytext_contents_manager_class
    from traitlets.config import Config

    from fedjax_grid.jupyter_hygiene import HOOK
    cls = build_async_jupytext_contents_manager_class(AsyncLargeFileManager)
    return cls(root_dir=str(root), config=Config({"ContentsManager": {"pre_save_hook": HOOK}}))


def test_run_and_saved_notebook_leaves_git_status_clean(repo):
    path = repo / "notebooks" / f"{NAME}.ipynb"
    ran = run_notebook_like_jupyterlab(path)
    cm = _jupyter_contents_manager(repo)
    asyncio.run(cm.save({"type": "notebook", "content": json.loads(json.dumps(ran))},
                        f"notebooks/{NAME}.ipynb"))
    assert _git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    full = repo / "runs" / "notebooks" / f"{NAME}.ipynb"   # the user's outputs are kept there
    kept = nbformat.read(full, as_version=4)
    assert sum(len(c.get("outputs", [])) for c in kept.cells) == 2 * len(
        [c for c in kept.cells if c.cell_type == "code"])
    assert _git(repo, "check-ignore", "runs/notebooks/01_quickstart.ipynb").strip()


def test_an_edited_cell_still_shows_in_git_status(repo):
    """The hook strips outputs, not edits: a changed cell is a change of the .ipynb and .py."""
    path = repo / "notebooks" / f"{NAME}.ipynb"
    ran = run_notebook_like_jupyterlab(path)
    ran.cells[0].source += "\nAn added line."
    cm = _jupyter_contents_manager(repo)
    asyncio.run(cm.save({"type": "notebook", "content": json.loads(json.dumps(ran))},
                        f"notebooks/{NAME}.ipynb"))
    changed = sorted(line[3:] for line in _git(repo, "status", "--porcelain").splitlines())
    assert changed == [f"notebooks/{NAME}.ipynb", f"notebooks/{NAME}.py"]
    assert "An added line." in (repo / "notebooks" / f"{NAME}.py").read_text()


@pytest.mark.slow  # suite budget (~10 s): the save hook's stripping stays in the default run
def test_git_filter_commits_a_notebook_with_outputs_stripped(repo):
    """Without the Jupyter extension (another editor saved it), the git filter (nbstripout's
    stripping plus the kernelspec) still commits the committed form: nothing to diff,
    nothing new staged."""
    proc = subprocess.run([sys.executable, "notebooks/sync.py", "--install-filter"], cwd=repo,
                          capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, proc.stderr
    path = repo / "notebooks" / f"{NAME}.ipynb"
    nbformat.write(run_notebook_like_jupyterlab(path), str(path))
    assert _git(repo, "diff", "--stat") == ""                  # the filter sees no change
    _git(repo, "add", "-A")
    assert _git(repo, "status", "--porcelain") == ""          # staging it stages nothing
    committed = _git(repo, "show", f":notebooks/{NAME}.ipynb")
    assert '"outputs": []' in committed and "image/png" not in committed


def test_sync_check_passes_for_a_run_notebook_and_fails_for_an_edited_one(repo):
    path = repo / "notebooks" / f"{NAME}.ipynb"
    nbformat.write(run_notebook_like_jupyterlab(path), str(path))
    check = [sys.executable, "notebooks/sync.py", "--check"]
    assert subprocess.run(check, cwd=repo, capture_output=True, env=_env()).returncode == 0
    src = repo / "notebooks" / f"{NAME}.py"
    src.write_text(src.read_text() + "\n# %%\nprint('new cell')\n")
    proc = subprocess.run(check, cwd=repo, capture_output=True, text=True, env=_env())
    assert proc.returncode == 1 and f"{NAME}.ipynb" in proc.stdout


def test_the_extension_is_enabled_by_the_package_and_by_sync_install():
    """pip installs jupyter-config/ (a regular install) into etc/jupyter; sync.py --install
    enables it for an editable one. Both name the module that Jupyter then loads."""
    conf = json.loads((REPO / "jupyter-config" / "jupyter_server_config.d" / "fedjax_grid.json")
                      .read_text())
    assert conf["ServerApp"]["jpserver_extensions"] == {"fedjax_grid.jupyter_hygiene": True}
    assert 'jupyter-config/jupyter_server_config.d/fedjax_grid.json' in \
        (REPO / "pyproject.toml").read_text()
    import fedjax_grid.jupyter_hygiene as ext
    assert ext._jupyter_server_extension_points() == [{"module": "fedjax_grid.jupyter_hygiene"}]
    assert "fedjax_grid.jupyter_hygiene" in (NOTEBOOKS / "sync.py").read_text()


def test_only_repository_notebooks_are_stripped(tmp_path):
    from fedjax_grid.jupyter_hygiene import is_repository_notebook
    other = tmp_path / "mine"
    other.mkdir()
    (other / "01_x.ipynb").write_text("{}")
    assert not is_repository_notebook(other / "01_x.ipynb")      # no jupytext.toml of ours
    assert is_repository_notebook(NOTEBOOKS / f"{NAME}.ipynb")
    assert not is_repository_notebook(NOTEBOOKS / "scratch.ipynb")  # not NN_name.ipynb
