"""Worker plugin: configures JAX on every Dask worker and checks versions.

Registered by the coordinator on connect; Dask applies it to workers that join
later too. On each worker it

- sets XLA flags and thread counts before JAX is first imported there,
- enables JAX's persistent compilation cache in ``compile_cache_dir``,
- records whether the worker's fedjax_grid version equals the coordinator's.

A worker with another version is refused: its plugin set-up fails (reported to
the coordinator), and every client task it is given raises
``VersionMismatch`` before touching data, so the engine retries it elsewhere.
"""
from __future__ import annotations

import os
import sys

from distributed.diagnostics.plugin import WorkerPlugin

import fedjax_grid

#: Set on each worker by the plugin; read by ``grid.tasks``.
WORKER_STATE: dict = {"configured": False, "version_ok": True, "expected_version": None}


class VersionMismatch(RuntimeError):
    """The worker runs another fedjax_grid version than the coordinator."""


class JaxWorkerPlugin(WorkerPlugin):
    name = "fedjax_grid"
    idempotent = False

    def __init__(self, version: str, compile_cache_dir: str | None = None,
                 xla_flags: str | None = None, intra_op_threads: int | None = None):
        self.version = version
        self.compile_cache_dir = compile_cache_dir
        self.xla_flags = xla_flags
        self.intra_op_threads = intra_op_threads

    def setup(self, worker):
        WORKER_STATE["expected_version"] = self.version
        WORKER_STATE["version_ok"] = fedjax_grid.__version__ == self.version
        if not WORKER_STATE["version_ok"]:
            raise VersionMismatch(
                f"worker {worker.address} runs fedjax_grid {fedjax_grid.__version__}, "
                f"coordinator runs {self.version}: install the same version")
        configure_jax(self.compile_cache_dir, self.xla_flags, self.intra_op_threads)
        WORKER_STATE["configured"] = True


def configure_jax(compile_cache_dir=None, xla_flags=None, intra_op_threads=None):
    """Apply JAX settings in this process (flags only take effect before JAX starts)."""
    if "jax" not in sys.modules:
        flags = os.environ.get("XLA_FLAGS", "")
        if xla_flags:
            flags = f"{flags} {xla_flags}".strip()
        if intra_op_threads:
            flags = (f"{flags} --xla_cpu_multi_thread_eigen=true "
                     f"intra_op_parallelism_threads={intra_op_threads}").strip()
        if flags:
            os.environ["XLA_FLAGS"] = flags
    if compile_cache_dir:
        from fedjax_grid.training.compile_cache import enable_persistent_cache
        enable_persistent_cache(compile_cache_dir)


def check_version() -> None:
    """Raise ``VersionMismatch`` in a task on a worker the plugin refused."""
    if not WORKER_STATE["version_ok"]:
        raise VersionMismatch(
            f"this worker runs fedjax_grid {fedjax_grid.__version__}, the coordinator "
            f"{WORKER_STATE['expected_version']}")
