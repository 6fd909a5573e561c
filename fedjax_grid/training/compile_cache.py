"""Counting XLA compilations, the persistent compilation cache, and programs that
persist whole (traced, lowered and compiled once per grid).

``compile_count()`` counts the backend-compile events JAX records
(``/jax/core/compile/backend_compile_duration``) since this module was
imported. A program loaded from JAX's persistent cache is recorded by JAX under
the same event, so the count is "executables obtained", compiled or loaded; a
program loaded by :class:`AotFunction` is not counted (nothing is compiled).

Two layers of caching across processes, both in the persistent-cache directory
(``enable_persistent_cache``; the Dask workers and the coordinator share it):

* JAX's persistent compilation cache skips XLA's compilation, but every new
  process still traces the Python function and lowers it to StableHLO first --
  for a train step that is most of the first call once the cache is warm (measured:
  trace 23 s + lower 12 s against 8 s of cache reads, quickstart, loaded machine).
  Its key covers the lowered module, the platform, ``XLA_FLAGS`` and the compile
  options, so it is correct for any function.
* :class:`AotFunction` keeps the compiled executable itself
  (``jax.experimental.serialize_executable``) under ``<cache dir>/fedjax_grid-aot/``,
  keyed by a text that names what the function computes (the trainer passes the
  model's and preprocessing's reprs, the optimizer, ...) plus the argument shapes,
  the versions of jax, jaxlib, flax, optax and fedjax_grid, a digest of fedjax_grid's
  source and of the model's and preprocessing's source files, ``XLA_FLAGS``, the
  devices and the CPU's vector extensions. A later process calls the loaded program
  without tracing anything. A description that cannot name the function exactly
  (a repr with a memory address, e.g. a lambda field) is not persisted. Only programs
  XLA compiled in this process are stored: one JAX loaded from its own persistent cache
  serialises without its kernels (jaxlib 0.10.2 on CPU; the reloaded copy fails with
  "NOT_FOUND: Function ... not found"), and an entry that fails to load, or fails so on
  its first call, is removed and the function compiled instead.
  ``FEDJAX_GRID_AOT=0`` turns this layer off.

XLA:CPU's thread-pool size is not part of either key and need not be: a program's
numbers depend on the pool of the process that runs it, not of the one that
compiled it (measured: a program compiled with 1 thread and loaded with 2 gives the
2-thread results bitwise).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
import os
import pathlib
import pickle
import threading
from typing import Any, Callable, Optional

import jax
import numpy as np
from jax import monitoring

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

PERSISTENT_HIT_EVENT = "/jax/compilation_cache/cache_hits"

_lock = threading.Lock()
_count = 0
_persistent_hits = 0


def _listener(event: str, duration_secs: float, **kwargs) -> None:
    global _count
    if event == BACKEND_COMPILE_EVENT:
        with _lock:
            _count += 1


def _hit_listener(event: str, **kwargs) -> None:
    global _persistent_hits
    if event == PERSISTENT_HIT_EVENT:
        with _lock:
            _persistent_hits += 1


monitoring.register_event_duration_secs_listener(_listener)
monitoring.register_event_listener(_hit_listener)


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


# -------------------------------------------------------- whole-program cache

AOT_ENV = "FEDJAX_GRID_AOT"
AOT_SUBDIR = "fedjax_grid-aot"
_PACKAGE = pathlib.Path(__file__).resolve().parents[1]


def aot_dir() -> Optional[pathlib.Path]:
    """Where :class:`AotFunction` keeps programs: ``<persistent cache dir>/fedjax_grid-aot``,
    or None (no persistent cache enabled in this process, or ``FEDJAX_GRID_AOT=0``)."""
    base = jax.config.jax_compilation_cache_dir
    if not base or os.environ.get(AOT_ENV, "1").strip() in ("0", "false", "no"):
        return None
    return pathlib.Path(base) / AOT_SUBDIR


@functools.lru_cache(maxsize=None)
def _file_digest(path: str) -> str:
    try:
        return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
    except OSError:
        return "?"


def source_digest(*objects) -> str:
    """Digest of the source files defining the classes of ``objects`` (user models)."""
    files = []
    for obj in objects:
        try:
            files.append(inspect.getsourcefile(type(obj)) or "?")
        except TypeError:
            files.append("?")
    return "|".join(_file_digest(f) for f in sorted(set(files)))


@functools.lru_cache(maxsize=1)
def environment_key() -> str:
    """Everything besides the function and its arguments that shapes a compiled program."""
    versions = []
    for dist in ("jax", "jaxlib", "flax", "optax"):
        try:
            versions.append(f"{dist}={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist}=?")
    package = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        package.update(path.relative_to(_PACKAGE).as_posix().encode())
        package.update(_file_digest(str(path)).encode())
    devices = [(d.platform, d.device_kind, d.id) for d in jax.local_devices()]
    try:
        with open("/proc/cpuinfo") as f:
            flags = sorted(next(line for line in f if line.startswith("flags")).split())
    except (OSError, StopIteration):
        flags = []
    backend = jax.local_devices()[0].client
    return repr((versions, package.hexdigest(), os.environ.get("XLA_FLAGS", ""), devices,
                 backend.platform_version, [f for f in flags if f.startswith(("avx", "amx", "fma"))]))


def _leaf_key(x) -> tuple:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        x = np.asarray(x)
        dtype = x.dtype
    return (x.shape, dtype, getattr(x, "weak_type", False))


def call_signature(args: tuple) -> tuple:
    """The pytree definition of ``args`` and (shape, dtype, weak type) of every leaf, as a
    hashable key for this process (no text built per call: a training step's ~100 leaves
    took ~1.6 ms as text, ~0.2 ms like this)."""
    leaves, tree = jax.tree.flatten(args)
    return (tree, tuple(map(_leaf_key, leaves)))


def signature(args: tuple) -> tuple:
    """:func:`call_signature` as text: what names a stored program across processes."""
    tree, leaves = call_signature(args)
    return (str(tree), tuple((tuple(shape), str(dtype), bool(weak))
                             for shape, dtype, weak in leaves))


class AotFunction:
    """``jitted`` whose compiled program persists across processes (see the module doc).

    description: text naming exactly what ``jitted`` computes (None: never persisted).
    devices: the devices the program runs on (its device assignment, in order).
    compiler_options: XLA options of its compilation (``Lowered.compile``'s; None: XLA's
        defaults), part of the stored program's key.
    Calls with a new argument signature load the program from disk or compile and store
    it; ``lower`` is ``jitted.lower``. Results are those of ``jitted``, bitwise.
    """

    def __init__(self, jitted: Callable, description: Optional[str], devices: tuple = (),
                 compiler_options: Optional[dict] = None):
        if description is not None and " at 0x" in description:
            description = None  # a repr with an address names no function across processes
        self.jitted, self.description, self.devices = jitted, description, tuple(devices)
        self.compiler_options = dict(compiler_options) if compiler_options else None
        self._programs: dict = {}
        self._loaded: dict = {}  # signature -> file of a loaded program not yet called
        self._lock = threading.Lock()

    def lower(self, *args):
        return self.jitted.lower(*args)

    def __call__(self, *args):
        sig = call_signature(args)
        program = self._programs.get(sig)
        if program is None:
            with self._lock:
                program = self._programs.get(sig) or self._obtain(sig, args)
                self._programs[sig] = program
        path = self._loaded.get(sig)
        if path is None:
            return program(*args)
        try:  # a loaded program's first call: a damaged entry fails here, not later
            out = program(*args)
        except jax.errors.JaxRuntimeError as e:
            if "NOT_FOUND" not in str(e):
                raise
            path.unlink(missing_ok=True)  # e.g. written by an older version: use the jit path
            self._programs[sig] = program = self.jitted
            out = program(*args)
        self._loaded.pop(sig, None)
        return out

    def _obtain(self, sig, args) -> Callable:
        folder = aot_dir()
        if folder is None or self.description is None:
            if self.compiler_options is None:
                return self.jitted
            return self.jitted.lower(*args).compile(self.compiler_options)
        options = (tuple(sorted(self.compiler_options.items())),) if self.compiler_options else ()
        key = hashlib.sha256(repr((self.description, signature(args),
                                   environment_key()) + options).encode()).hexdigest()
        path = folder / f"{key[:40]}.pkl"
        loaded = _load(path, self.devices)
        if loaded is not None:
            self._loaded[sig] = path
            return loaded
        hits = _persistent_hits
        compiled = self.jitted.lower(*args).compile(self.compiler_options)
        if _persistent_hits == hits:
            # Only a program XLA compiled here: one that JAX loaded from its persistent
            # cache serialises without its kernels (jaxlib 0.10.2, XLA:CPU: calling the
            # reloaded copy fails with "NOT_FOUND: Function ... not found").
            _store(path, compiled)
        return compiled


def _load(path: pathlib.Path, devices: tuple) -> Any:
    """The program stored at ``path``, or None (absent, or unreadable: then removed and
    recompiled)."""
    from jax.experimental.serialize_executable import deserialize_and_load
    try:
        payload, in_tree, out_tree = pickle.loads(path.read_bytes())
        return deserialize_and_load(payload, in_tree, out_tree,
                                    execution_devices=list(devices) or None)
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - a damaged or foreign entry: compile instead
        path.unlink(missing_ok=True)
        return None


def _store(path: pathlib.Path, compiled) -> None:
    """Write ``compiled`` atomically; a program that cannot be serialised is not stored."""
    from jax.experimental.serialize_executable import serialize

    from fedjax_grid.atomic_write import write_atomic
    try:
        payload, in_tree, out_tree = serialize(compiled)
        data = pickle.dumps((payload, in_tree, out_tree))
    except Exception:  # noqa: BLE001 - e.g. closed-over constants: keep the jit path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, fsync=False)
