"""Worker plugin: configures JAX on every Dask worker and checks versions.

Registered by the coordinator on connect; Dask applies it to workers that join
later too. On each worker it

- pins an embedded LocalCluster's workers to disjoint CPU cores (before JAX is
  imported there, so XLA sizes its thread pool to the worker's share of the
  machine instead of every worker fighting over all cores),
- sets XLA flags before JAX is first imported there,
- enables JAX's persistent compilation cache in ``compile_cache_dir``,
- records whether the worker's fedjax_grid version equals the coordinator's.

A worker with another version is refused: its plugin set-up fails, the
coordinator's set-up check (``grid.health``) quarantines it for the run, and any
client task that still reaches it raises ``VersionMismatch`` before touching data.
"""
from __future__ import annotations

import os
import sys

from distributed.diagnostics.plugin import WorkerPlugin

import fedjax_grid

#: Set on each worker by the plugin; read by ``grid.tasks``.
WORKER_STATE: dict = {"configured": False, "version_ok": True, "expected_version": None,
                      "setup_error": None}


class VersionMismatch(RuntimeError):
    """The worker runs another fedjax_grid version than the coordinator."""


class JaxWorkerPlugin(WorkerPlugin):
    name = "fedjax_grid"
    idempotent = False

    def __init__(self, version: str, compile_cache_dir: str | None = None,
                 xla_flags: str | None = None, cpu_map: dict | None = None):
        """cpu_map: worker name (str) -> CPU core ids it may use (LocalCluster only)."""
        self.version = version
        self.compile_cache_dir = compile_cache_dir
        self.xla_flags = xla_flags
        self.cpu_map = cpu_map or {}

    def setup(self, worker):
        WORKER_STATE["expected_version"] = self.version
        WORKER_STATE["version_ok"] = fedjax_grid.__version__ == self.version
        if not WORKER_STATE["version_ok"]:
            raise VersionMismatch(
                f"worker {worker.address} runs fedjax_grid {fedjax_grid.__version__}, "
                f"coordinator runs {self.version}: install the same version")
        cpus = self.cpu_map.get(str(worker.name))
        try:
            configure_jax(self.compile_cache_dir, self.xla_flags, cpus)
        except Exception as e:  # noqa: BLE001 - reported by grid.health's set-up check
            WORKER_STATE["setup_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            raise
        WORKER_STATE["configured"] = True


def configure_jax(compile_cache_dir=None, xla_flags=None, cpus=None):
    """Apply JAX settings in this process (they only take effect before JAX starts)."""
    started = _jax_backend_started()
    WORKER_STATE["jax_started_before_setup"] = started
    if cpus and hasattr(os, "sched_setaffinity") and not started:
        # XLA sizes its CPU thread pool from the schedulable cores when it starts.
        os.sched_setaffinity(0, set(cpus))
        WORKER_STATE["cpus"] = sorted(cpus)
    if "jax" not in sys.modules:
        if xla_flags:
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {xla_flags}".strip()
    if compile_cache_dir:
        from fedjax_grid.training.compile_cache import enable_persistent_cache
        enable_persistent_cache(compile_cache_dir)


def _jax_backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return True  # unknown: assume started, change nothing


def check_version() -> None:
    """Raise ``VersionMismatch`` in a task on a worker the plugin refused."""
    if not WORKER_STATE["version_ok"]:
        raise VersionMismatch(
            f"this worker runs fedjax_grid {fedjax_grid.__version__}, the coordinator "
            f"{WORKER_STATE['expected_version']}")
