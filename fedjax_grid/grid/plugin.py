"""Worker plugin: configures JAX on every Dask worker and checks versions.

Registered by the coordinator on connect; Dask applies it to workers that join
later too. On each worker it

- pins an embedded LocalCluster's workers to disjoint CPU cores (before JAX is
  imported there, so XLA sizes its thread pool to the worker's share of the
  machine instead of every worker fighting over all cores),
- sets XLA flags before JAX is first imported there,
- fixes the size of XLA:CPU's intra-op thread pool (``PJRT_NPROC``, read by XLA when
  its CPU backend starts; default: the cores the process may use) to ``grid.xla_threads``
  on every worker. The pool size changes the numbers -- reductions and matmuls split
  over threads add in another order (measured: a quickstart client's update differs
  between 1 and 2 threads, and differs again at 4) -- so workers that size it by their
  own cores (a ``dask worker`` sees all cores, a pinned LocalCluster worker one) gave
  different results for the same config and seed. A worker whose JAX already started
  with another pool size is refused (its set-up fails; restart it),
- undoes the malloc setting Dask's nanny gives its worker processes
  (``MALLOC_TRIM_THRESHOLD_=65536``, ``distributed.nanny.pre-spawn-environ``): with it
  glibc stops adapting its mmap threshold, so every XLA buffer over 128 KiB is a
  fresh ``mmap`` + page faults + ``munmap``; measured on the quickstart, a client's
  local training took 1.85x as long (0.74 s vs 0.40 s per task). ``tune_malloc``
  sets the thresholds glibc's own adaptation reaches (``mallopt``) in such a worker;
  an embedded LocalCluster does not set the variable at all,
- enables JAX's persistent compilation cache in ``compile_cache_dir``,
- records whether the worker's fedjax_grid version equals the coordinator's,
- leaves the traceback of a task failed by fault simulation out of the worker's log
  (the tasks table records it, with its reason).

That the processes of one desktop share its GPU is set on import of the package, which the
plugin's arrival triggers in a ``dask worker`` (``fedjax_grid.accelerator``).

A worker with another version is refused: its plugin set-up fails, the
coordinator's set-up check (``grid.health``) quarantines it for the run, and any
client task that still reaches it raises ``VersionMismatch`` before touching data.
"""
from __future__ import annotations

import asyncio
import os
import sys

from distributed.diagnostics.plugin import WorkerPlugin

from fedjax_grid import version

#: Set on each worker by the plugin; read by ``grid.tasks``.
WORKER_STATE: dict = {"configured": False, "version_ok": True, "expected_version": None,
                      "setup_error": None}


class VersionMismatch(RuntimeError):
    """The worker runs another fedjax_grid version than the coordinator."""


class JaxWorkerPlugin(WorkerPlugin):
    name = "fedjax_grid"
    idempotent = False

    def __init__(self, version: str, compile_cache_dir: str | None = None,
                 xla_flags: str | None = None, cpu_map: dict | None = None,
                 xla_threads: int | None = None, nice: int = 0):
        """cpu_map: worker name (str) -> CPU core ids it may use (LocalCluster only);
        xla_threads: XLA:CPU intra-op threads per worker (``grid.xla_threads``; None: its cores);
        nice: added to the worker process's niceness (``grid.worker_nice``, LocalCluster only)."""
        self.version = version
        self.compile_cache_dir = compile_cache_dir
        self.xla_flags = xla_flags
        self.cpu_map = cpu_map or {}
        self.xla_threads = xla_threads
        self.nice = nice

    async def setup(self, worker):
        """Configure this worker. Everything that must happen before JAX starts (version,
        malloc, CPU affinity, ``PJRT_NPROC``, ``XLA_FLAGS``) runs here, on the worker's
        event loop; importing JAX for the compilation cache (seconds alone; minutes when 32
        workers share two cores) runs in a thread, so that the worker keeps heartbeating and
        answers the set-up check with ``setting_up`` meanwhile (``grid.health``: a worker
        still importing is not a dead one). A synchronous ``setup`` blocked the worker's
        event loop for the whole import: no heartbeat, no answer, indistinguishable from a
        frozen desktop."""
        WORKER_STATE["expected_version"] = self.version
        WORKER_STATE["version_ok"] = version.__version__ == self.version
        if not WORKER_STATE["version_ok"]:
            raise VersionMismatch(
                f"worker {worker.address} runs fedjax_grid {version.__version__}, "
                f"coordinator runs {self.version}: install the same version")
        WORKER_STATE["malloc_tuned"] = tune_malloc()
        if "nice" not in WORKER_STATE:  # once per worker process, however often set up
            WORKER_STATE["nice"] = lower_priority(self.nice)
        quiet_simulated_faults()
        cpus = self.cpu_map.get(str(worker.name))
        WORKER_STATE["setting_up"] = True
        try:
            configure_environment(self.xla_flags, cpus, getattr(self, "xla_threads", None))
            await asyncio.to_thread(self.import_jax)
        except Exception as e:  # noqa: BLE001 - reported by grid.health's set-up check
            WORKER_STATE["setup_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            raise
        finally:
            WORKER_STATE["setting_up"] = False
        WORKER_STATE["configured"] = True

    def import_jax(self) -> None:
        """(in a thread of the worker, from ``setup``) import JAX and enable the cache."""
        if self.compile_cache_dir:
            enable_compile_cache(self.compile_cache_dir)


class _SimulatedFaultFilter:
    """Drops Dask's "Compute Failed" log record of a task that failed by fault simulation
    (its exception says "(simulated)"): the failure is recorded in the tasks table, with
    its reason, and the worker's traceback would only bury a notebook or a terminal."""

    def filter(self, record) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - an unformattable record is kept as it is
            return True
        return not ("Compute Failed" in message and "(simulated)" in message)


def quiet_simulated_faults() -> None:
    """Install ``_SimulatedFaultFilter`` on the worker's logger (once per process)."""
    import logging
    log = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _SimulatedFaultFilter) for f in log.filters):
        log.addFilter(_SimulatedFaultFilter())


def configure_jax(compile_cache_dir=None, xla_flags=None, cpus=None, xla_threads=None):
    """Apply JAX settings in this process (they only take effect before JAX starts)."""
    configure_environment(xla_flags, cpus, xla_threads)
    if compile_cache_dir:
        enable_compile_cache(compile_cache_dir)


def configure_environment(xla_flags=None, cpus=None, xla_threads=None) -> None:
    """The settings JAX reads when it starts (pool size, CPU affinity of this thread and the
    threads it starts later, ``XLA_FLAGS``); imports nothing heavy."""
    started = _jax_backend_started()
    WORKER_STATE["jax_started_before_setup"] = started
    if xla_threads is not None:
        set_xla_threads(xla_threads, started)
    if cpus and hasattr(os, "sched_setaffinity") and not started:
        # XLA sizes its CPU thread pool from the schedulable cores when it starts
        # (unless PJRT_NPROC fixes it: set above).
        os.sched_setaffinity(0, set(cpus))
        WORKER_STATE["cpus"] = sorted(cpus)
    if "jax" not in sys.modules:
        if xla_flags:
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {xla_flags}".strip()


def enable_compile_cache(compile_cache_dir) -> None:
    """Import JAX and point its persistent compilation cache at ``compile_cache_dir``."""
    from fedjax_grid.training.compile_cache import enable_persistent_cache
    enable_persistent_cache(compile_cache_dir)


class XlaThreadsMismatch(RuntimeError):
    """JAX started in this worker with another intra-op pool size than the run asks for."""


def xla_pool_size(environ=None) -> int:
    """The size of XLA:CPU's intra-op thread pool in a process started with ``environ``:
    ``PJRT_NPROC``, else ``NPROC`` (XLA's ``DefaultThreadPoolSize``), else the CPUs the
    process may use."""
    environ = os.environ if environ is None else environ
    for name in ("PJRT_NPROC", "NPROC"):
        value = environ.get(name, "")
        if value.strip().isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_xla_threads(n: int, started: bool) -> None:
    """Make XLA:CPU's intra-op pool ``n`` threads (``PJRT_NPROC``) in this process.

    Before JAX's backend starts the variable decides it; after, the pool exists: a size
    other than ``n`` raises ``XlaThreadsMismatch`` (the worker would compute other numbers).
    """
    if started and xla_pool_size() != n:
        raise XlaThreadsMismatch(
            f"JAX already runs in this worker with {xla_pool_size()} XLA threads, the run "
            f"asks for grid.xla_threads={n} (other numbers than the other workers): restart "
            "the worker")
    os.environ["PJRT_NPROC"] = str(int(n))
    WORKER_STATE["xla_threads"] = int(n)


def cpu_flags() -> set:
    """This machine's CPU feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return set(next(line for line in f if line.startswith("flags")).split())
    except (OSError, StopIteration):
        return set()


#: CPU flags of a native bf16 matmul. Without one, XLA:CPU computes a bf16 dot by
#: converting to float32: ``training.precision=bf16`` is then slower than f32.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def bf16_support() -> dict:
    """``{'backend': JAX's default backend, 'native_bf16': whether the CPU has a native
    bf16 matmul}`` of this process (on the workers: ``client.run(bf16_support)``)."""
    import jax
    return {"backend": jax.default_backend(),
            "native_bf16": any(f in cpu_flags() for f in NATIVE_BF16_FLAGS)}


def numerics_signature() -> dict:
    """What this process's numbers depend on beyond the task: jax/jaxlib versions,
    ``XLA_FLAGS``, the XLA:CPU pool size and the CPU's vector extensions (e.g.
    ``client.run(numerics_signature)``: workers with equal signatures compute a client's
    update bitwise alike)."""
    import jax
    import jaxlib
    isa = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "fma")))
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "xla_threads": xla_pool_size(),
            "devices": jax.local_device_count(), "cpu": " ".join(isa)}


#: glibc mallopt parameters and the values its dynamic threshold grows to on 64-bit
#: (DEFAULT_MMAP_THRESHOLD_MAX = 32 MiB; the trim threshold follows at twice that).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 2 * _MMAP_THRESHOLD


def tune_malloc(environ=None) -> bool:
    """In a process started with ``MALLOC_TRIM_THRESHOLD_`` set (a Dask nanny's worker),
    give glibc the mmap and trim thresholds its dynamic adjustment would reach, so
    XLA's large temporary buffers are reused instead of mapped and unmapped on every
    step. Returns whether it changed anything (False: variable unset, or not glibc)."""
    environ = os.environ if environ is None else environ
    if "MALLOC_TRIM_THRESHOLD_" not in environ or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to undo
        return False
    return ok


def lower_priority(by: int) -> int:
    """Raise the niceness of every thread of this process by ``by`` (Linux keeps it per
    thread; threads started later inherit it from the one that starts them); the
    process's niceness after it. 0 (or no /proc): nothing changes."""
    if by > 0 and os.path.isdir("/proc/self/task"):
        for tid in os.listdir("/proc/self/task"):
            try:
                tid = int(tid)
                os.setpriority(os.PRIO_PROCESS, tid,
                               min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
            except (OSError, ValueError):
                pass  # a thread that ended meanwhile
    return os.getpriority(os.PRIO_PROCESS, 0)


def size_own_xla_pool(n: int | None) -> bool:
    """Start JAX's CPU backend in this process (the coordinator) with an intra-op pool of
    ``n`` threads and without asynchronous dispatch; True if it did. ``PJRT_NPROC`` is set
    only while the backend starts: worker processes spawned later inherit this process's
    environment as it was. The coordinator's loops (BatchNorm re-estimation, evaluation)
    wait on every result, so its computations run inline on the calling thread instead of
    being handed to a dispatch thread (measured beside two busy workers: 0.73-0.80 ->
    0.65-0.68 CPU-s for the quickstart's re-estimation, results unchanged; the 4-client
    quickstart's steady round did not move beyond its noise: medians 2.08 vs 2.09 s over 4
    alternating runs each). False (nothing changed) when ``n`` is None or JAX's backends
    already started here."""
    if n is None or _jax_backend_started():
        return False
    old = os.environ.get("PJRT_NPROC")
    os.environ["PJRT_NPROC"] = str(int(n))
    try:
        import jax
        jax.config.update("jax_cpu_enable_async_dispatch", False)  # read when the backend starts
        jax.devices()  # starts the configured backends (the CPU one reads PJRT_NPROC now)
    finally:
        if old is None:
            os.environ.pop("PJRT_NPROC", None)
        else:
            os.environ["PJRT_NPROC"] = old
    return True


def malloc_state() -> tuple:
    """``(MALLOC_TRIM_THRESHOLD_ or None, whether tune_malloc changed malloc)`` of this
    process (e.g. ``client.run(malloc_state)`` on the workers)."""
    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), WORKER_STATE.get("malloc_tuned", False)


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
            f"this worker runs fedjax_grid {version.__version__}, the coordinator "
            f"{WORKER_STATE['expected_version']}")
