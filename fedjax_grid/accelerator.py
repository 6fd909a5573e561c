"""One desktop's GPU shared by several JAX processes (the coordinator and its workers).

JAX's GPU backend takes 75 % of the card's memory when it starts, so a second process on
the same GPU (another LocalCluster worker, or the coordinator, which re-estimates
BatchNorm statistics and evaluates) cannot even create its CUDA context (seen on an
H200: ``CUDA_ERROR_OUT_OF_MEMORY`` in ``Failed to create stream executor``). Every
process of the toolkit allocates on demand instead, unless the user set the variable.
The CPU backend ignores it. Imports nothing: ``fedjax_grid/__init__`` calls it, so it
takes effect before any JAX backend starts in a process that imports the toolkit.
"""
from __future__ import annotations

import os

#: read by JAX when its GPU backend starts: allocate on demand, not 75 % at start
SHARED_ACCELERATOR_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def share_accelerator_memory(environ=None) -> dict:
    """Set ``SHARED_ACCELERATOR_ENV`` in ``environ`` (default ``os.environ``) where the
    user has not set those variables; returns what it set."""
    environ = os.environ if environ is None else environ
    added = {k: v for k, v in SHARED_ACCELERATOR_ENV.items() if k not in environ}
    environ.update(added)
    return added
