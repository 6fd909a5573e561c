"""Counting XLA compilations and the persistent on-disk compilation cache.

``compile_count()`` counts the backend-compile events JAX records
(``/jax/core/compile/backend_compile_duration``) since this module was
imported. A program loaded from the persistent cache is recorded by JAX under
the same event, so the count is "executables obtained", compiled or loaded.
"""
from __future__ import annotations

import os
import threading

import jax
from jax import monitoring

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

_lock = threading.Lock()
_count = 0


def _listener(event: str, duration_secs: float, **kwargs) -> None:
    global _count
    if event == BACKEND_COMPILE_EVENT:
        with _lock:
            _count += 1


monitoring.register_event_duration_secs_listener(_listener)


def compile_count() -> int:
    """Number of XLA backend compilations in this process since import."""
    return _count


def enable_persistent_cache(directory: str | os.PathLike) -> str:
    """Store every compiled program under ``directory`` and reuse it across processes.

    Sets ``jax_compilation_cache_dir`` and drops the minimum compile-time and
    entry-size thresholds to 0 so that small train steps are cached too.
    Returns the absolute directory. Works before or after the first compilation
    (JAX's cache object is reset whenever the directory changes).
    """
    path = os.path.abspath(os.fspath(directory))
    os.makedirs(path, exist_ok=True)
    previous = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    if not previous or os.path.abspath(previous) != path:
        # JAX decides once per process whether the cache is used; make it look again.
        from jax.experimental.compilation_cache import compilation_cache
        compilation_cache.reset_cache()
    return path


def default_cache_dir() -> str:
    """Where compiled programs persist between runs on this machine.

    ``FEDJAX_GRID_COMPILE_CACHE`` if set, else ``~/.cache/fedjax_grid/jax``. Each
    desktop keeps its own (entries are specific to its CPU and jax version).
    """
    return os.environ.get("FEDJAX_GRID_COMPILE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "fedjax_grid", "jax")
