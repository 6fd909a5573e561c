"""Execute a notebook of ``notebooks/`` with nbclient after injecting test parameters."""
from __future__ import annotations

import os
import pathlib
import time

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

REPO = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"


def inject_parameters(nb, params: dict):
    """Insert a cell assigning ``params`` right after the cell tagged 'parameters'."""
    idx = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(idx) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    src = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    cell = new_code_cell(src)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(idx[0] + 1, cell)
    return nb


def execute(name: str, params: dict, workdir: pathlib.Path, timeout: int = 240):
    """Run notebooks/<name>.ipynb top to bottom; return (executed notebook, seconds).

    Raises nbclient's CellExecutionError on the first failing cell.
    """
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    inject_parameters(nb, params)
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env_path) if p)
    # the kernel starts as a fresh Jupyter kernel would: without the XLA log level that an
    # earlier test in this process may have set (the notebooks set it and say so once)
    xla_level = os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    t0 = time.time()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                       resources={"metadata": {"path": str(workdir)}}).execute()
    finally:
        if xla_level is not None:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = xla_level
        if env_path:
            os.environ["PYTHONPATH"] = env_path
        else:
            os.environ.pop("PYTHONPATH", None)
    return nb, time.time() - t0


def outputs_of(nb, kind: str = "image/png") -> list:
    """All outputs of the executed notebook carrying ``kind`` data."""
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if kind in o.get("data", {})]
