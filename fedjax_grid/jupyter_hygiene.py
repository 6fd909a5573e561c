"""Notebooks that do not dirty the repository: the committed form and a Jupyter save hook.

The repository's notebooks (``notebooks/NN_name.ipynb``) are committed in one canonical
form, ``committed_form(nb)``: nbstripout's ``strip_output`` (no outputs, no execution
counts, cell ids ``0, 1, ...``, none of ``EXTRA_KEYS``) and only ``kernelspec``
(ipykernel's ``python3``) in the notebook metadata -- exactly what ``notebooks/sync.py``
writes from the jupytext ``.py`` sources, and what the git filter commits: ``python -m
fedjax_grid.jupyter_hygiene`` reads a notebook on stdin and writes its committed form
(configured per clone by ``python notebooks/sync.py --install-filter``; ``.gitattributes``
applies it to ``*.ipynb``).

Git compares a file's size before its content, so a notebook saved with outputs shows
as modified in ``git status`` even when the filter would commit nothing new. The
Jupyter server extension here closes that gap where notebooks are run: installed with
the package (``jupyter-config/``, enabled for every ``jupyter lab`` of the environment),
it registers ``pre_save_hook``, which -- for a notebook of such a folder only (a
``jupytext.toml`` beside it naming ``fedjax_grid``) -- writes the notebook as the user
sees it, outputs and all, to ``<repository>/runs/notebooks/<name>.ipynb`` (ignored by
git) and saves the tracked file in its committed form. After Run All and save,
``git status`` stays clean; every other notebook is saved untouched.
"""
from __future__ import annotations

import copy
import pathlib
import re
import weakref

#: The kernel JupyterLab records when it runs a notebook (ipykernel's own kernel spec).
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}

#: nbstripout's default keys (its command line strips these without being told).
NBSTRIPOUT_DEFAULT_KEYS = ("metadata.signature", "metadata.widgets", "cell.metadata.collapsed",
                           "cell.metadata.ExecuteTime", "cell.metadata.execution",
                           "cell.metadata.heading_collapsed", "cell.metadata.hidden",
                           "cell.metadata.scrolled")
#: What running and saving a notebook in JupyterLab with jupytext adds beyond those: the
#: kernel's language_info, jupytext's own section, JupyterLab's trust and editing flags.
EXTRA_KEYS = ("metadata.language_info", "metadata.jupytext", "cell.metadata.trusted",
              "cell.metadata.editable", "cell.metadata.deletable", "cell.metadata.slideshow")
#: A notebook of the repository: ``NN_name.ipynb``.
NOTEBOOK_NAME = re.compile(r"^\d\d_[A-Za-z0-9_]+\.ipynb$")
#: Where the full notebooks (with outputs) go, relative to the repository.
FULL_COPIES = pathlib.Path("runs") / "notebooks"


def committed_form(nb):
    """A copy of the notebook ``nb`` (an ``nbformat.NotebookNode``) in its committed form."""
    import nbformat
    from nbstripout import strip_output
    nb = nbformat.from_dict(copy.deepcopy(dict(nb)))
    nb = strip_output(nb, keep_output=False, keep_count=False, keep_id=False,
                      extra_keys=list(NBSTRIPOUT_DEFAULT_KEYS + EXTRA_KEYS))
    nb.metadata = nbformat.NotebookNode(kernelspec=nbformat.NotebookNode(KERNELSPEC))
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nb


def is_repository_notebook(path: pathlib.Path) -> bool:
    """True for ``NN_name.ipynb`` in a folder whose ``jupytext.toml`` names fedjax_grid."""
    toml = path.parent / "jupytext.toml"
    try:
        return bool(NOTEBOOK_NAME.match(path.name)) and "fedjax_grid" in toml.read_text()
    except OSError:
        return False


def pre_save_hook(model, path, contents_manager, **kwargs):
    """Jupyter pre-save hook: a repository notebook is saved in its committed form, its full
    copy (outputs, widget state) under ``runs/notebooks/`` beside the repository."""
    if model.get("type") != "notebook" or not model.get("content"):
        return
    root = pathlib.Path(getattr(contents_manager, "root_dir", "."))
    file = root / str(path).lstrip("/")
    if not is_repository_notebook(file):
        return
    import nbformat
    nb = nbformat.from_dict(model["content"])
    full = file.parent.parent / FULL_COPIES / file.name
    try:
        full.parent.mkdir(parents=True, exist_ok=True)
        from fedjax_grid.atomic_write import atomic_path
        with atomic_path(full, fsync=False) as tmp:
            nbformat.write(nb, str(tmp))
    except OSError as e:  # the tracked file is still saved (stripped); say why no copy
        contents_manager.log.warning("fedjax_grid: no full copy of %s (%s)", path, e)
    model["content"] = committed_form(nb)


def _jupyter_server_extension_points():
    return [{"module": "fedjax_grid.jupyter_hygiene"}]


HOOK = "fedjax_grid.jupyter_hygiene.pre_save_hook"


def _link_jupyter_server_extension(server_app):
    """Configure the hook before the contents manager exists: jupytext's extension replaces
    the contents manager when it loads, and the new one reads the same configuration."""
    from traitlets.config import Config
    if not server_app.config.ContentsManager.get("pre_save_hook"):
        server_app.update_config(Config({"ContentsManager": {"pre_save_hook": HOOK}}))


#: Contents managers the hook was registered with (registering twice would strip the
#: full copy too).
_REGISTERED: "weakref.WeakSet" = weakref.WeakSet()


def _load_jupyter_server_extension(server_app):
    cm = server_app.contents_manager
    if cm.pre_save_hook is not pre_save_hook and cm not in _REGISTERED:
        cm.register_pre_save_hook(pre_save_hook)
        _REGISTERED.add(cm)
    server_app.log.info("fedjax_grid: repository notebooks are saved without outputs "
                        "(full copies in runs/notebooks/)")


def main(argv=None) -> int:
    """The git filter: a notebook on stdin (clean) or in the file named (diff textconv),
    its committed form on stdout."""
    import sys

    import nbformat
    argv = sys.argv[1:] if argv is None else argv
    text = pathlib.Path(argv[0]).read_text(encoding="utf-8") if argv else sys.stdin.read()
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception:  # noqa: BLE001 - not a notebook: commit it as it is
        sys.stdout.write(text)
        return 0
    sys.stdout.write(nbformat.writes(committed_form(nb)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
