"""Cluster lifecycle: an embedded LocalCluster or an existing Dask scheduler.

``open_cluster(grid_config)`` returns a ``GridHandle`` holding a connected
``distributed.Client`` with fedjax_grid's worker plugin registered. With
``grid.scheduler`` unset it starts a ``LocalCluster`` of worker *processes*
bound to ``grid.host`` (127.0.0.1 by default: nothing listens on 0.0.0.0 unless
asked); otherwise it connects to the scheduler that desktops joined with
``dask worker tcp://HOST:8786``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pathlib
import shutil
import tempfile
from typing import Optional

import dask
import distributed

from fedjax_grid import version
from fedjax_grid.errors import UserError, show
from fedjax_grid.grid.plugin import JaxWorkerPlugin


@dataclasses.dataclass
class GridHandle:
    """A connected grid: ``client`` is the Dask ``distributed.Client`` (not a federated
    client); ``cluster`` the embedded LocalCluster or None; ``plugin_errors`` worker
    address -> why the worker plugin failed there."""
    client: distributed.Client
    cluster: Optional[distributed.LocalCluster]
    plugin_errors: dict

    @property
    def dashboard_link(self) -> str:
        return self.client.dashboard_link

    def workers(self) -> dict:
        """Worker address -> scheduler's info (name, nthreads, memory_limit, ...)."""
        return self.client.scheduler_info(n_workers=-1).get("workers", {})

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran or the client was closed (e.g. a notebook's last cell)."""
        return self.client.status in ("closing", "closed")

    def close(self) -> None:
        """Close the client and, when this handle started it, the embedded cluster (its
        workers first told that the scheduler's going is expected: ``quiet_shutdown``)."""
        try:
            if self.cluster is not None and not self.closed:
                try:
                    self.client.run(quiet_shutdown, on_error="return", callback_timeout=5)
                except Exception:  # noqa: BLE001 - closing goes on whatever the workers say
                    pass
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


#: Loggers a closing embedded cluster's workers stop reporting errors on.
SHUTDOWN_QUIET = ("distributed.worker",)


def quiet_shutdown() -> int:
    """(run on every worker of an embedded cluster about to close) Raise the level of
    ``SHUTDOWN_QUIET`` to CRITICAL: a worker whose heartbeat meets the scheduler already
    gone (Dask retires workers and terminates the scheduler concurrently) would print
    "Failed to communicate with scheduler during heartbeat" and a traceback into the
    run's output. Returns the level set."""
    for name in SHUTDOWN_QUIET:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return logging.CRITICAL


#: Why a plain-TCP grid beyond this machine is refused, and what is allowed.
INSECURE = ("lets anyone who can reach it run code on every desktop attached; allowed: "
            "tls://HOST:PORT with grid.tls_dir (`fedjax-grid certs DIR`), a loopback address "
            "(127.0.0.1, localhost, ::1), or grid.allow_insecure=true (run --allow-insecure) on "
            "a network you trust")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses no other machine can reach
    (a host name other than localhost is not resolved here: it may be any machine)."""
    import ipaddress
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_secure(grid) -> None:
    """UserError unless the grid stays on this machine or is TLS, or ``grid.allow_insecure``:
    a plain-TCP Dask scheduler runs whatever code anyone who reaches it submits, on every
    desktop attached to it. Checks ``grid.scheduler`` (to connect to) or, for an embedded
    LocalCluster, ``grid.host`` (to listen on); sends nothing anywhere."""
    if grid.allow_insecure:
        return
    if grid.scheduler is not None:
        proto, _, rest = grid.scheduler.rpartition("://")
        host = rest.rsplit(":", 1)[0]
        if proto != "tls" and not is_loopback(host):
            raise UserError(f"grid.scheduler={show(grid.scheduler)} is refused: plain TCP to a "
                            f"non-loopback address {INSECURE}", path="grid.scheduler")
    elif grid.tls_dir is None and not is_loopback(grid.host):
        raise UserError(f"grid.host={show(grid.host)} is refused: a LocalCluster listening on a "
                        f"non-loopback address without TLS {INSECURE}", path="grid.host")


def security_from(tls_dir: Optional[str]):
    """Dask ``Security`` for the coordinator from a ``fedjax-grid certs`` folder."""
    if tls_dir is None:
        return None
    from fedjax_grid.grid.certs import client_security
    return client_security(tls_dir)


def local_cpu_map(n_workers: int) -> dict | None:
    """Worker name -> disjoint CPU cores for an embedded LocalCluster (None if too few cores).

    LocalCluster names its workers 0..n-1; each gets len(cores) // n of this
    process's cores, so n workers on one machine do not oversubscribe it.
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < n_workers or n_workers < 2:
        return None
    per = len(cores) // n_workers
    return {str(i): cores[i * per:(i + 1) * per] for i in range(n_workers)}


#: Memory one LocalCluster worker process needs at the least, in bytes: Python, JAX, Dask
#: and a small model (measured: 0.42-0.43 GiB resident for a test worker training VGG-11 at
#: 1/8 width on digits; 0.8 GiB for a benchmark's full-width VGG worker).
WORKER_MEMORY = 512 * 2 ** 20


def machine_memory() -> Optional[int]:
    """This machine's physical memory in bytes (None where it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_local_cluster(grid) -> None:
    """UserError when an embedded LocalCluster of ``grid.workers`` processes cannot fit in
    this machine's memory (WORKER_MEMORY each); nothing to check for an external scheduler."""
    total = machine_memory()
    if grid.scheduler is not None or total is None:
        return
    most = max(1, total // WORKER_MEMORY)
    if grid.workers > most:
        raise UserError(f"grid.workers={grid.workers} is invalid on this machine: an integer in "
                        f"[1, {most}] is required (each LocalCluster worker process needs about "
                        f"{WORKER_MEMORY / 2 ** 30:g} GiB; this machine has {total / 2 ** 30:.1f} "
                        "GiB)", path="grid.workers")


def open_cluster(grid, *, local_directory: Optional[str] = None) -> GridHandle:
    """Connect (or start a LocalCluster) per ``GridConfig`` and register the plugin."""
    check_secure(grid)
    check_local_cluster(grid)
    security = security_from(grid.tls_dir)
    local_directory = grid.local_directory or local_directory or os.path.join(
        tempfile.gettempdir(), "fedjax_grid-dask")
    from fedjax_grid.training.compile_cache import default_cache_dir  # imports jax: keep lazy
    cache_dir = grid.compile_cache_dir or default_cache_dir()
    cluster = None
    if grid.scheduler is None:
        from fedjax_grid.grid.certs import local_cluster_security
        local = local_cluster_security(grid.tls_dir) if security is not None else None
        cluster = _local_cluster(grid, local, local_directory)
        dask_client = distributed.Client(cluster, security=local)
    else:  # an external scheduler: its workers have their own scratch folders
        dask_client = connect(grid, security)
    keep_replicas(dask_client, timeout_s=max(5.0, grid.connect_timeout_s))
    cpu_map = local_cpu_map(grid.workers) if cluster is not None and grid.pin_workers else None
    plugin = JaxWorkerPlugin(version.__version__, compile_cache_dir=cache_dir, cpu_map=cpu_map,
                             xla_threads=grid.xla_threads,
                             nice=grid.worker_nice if cluster is not None else 0)
    errors = register_plugin(dask_client, plugin, timeout_s=max(5.0, grid.connect_timeout_s))
    return GridHandle(client=dask_client, cluster=cluster, plugin_errors=errors)


def keep_replicas(dask_client, timeout_s: float = 5.0) -> bool:
    """Stop the scheduler's active memory manager; True when it was running.

    Its default policy (``ReduceReplicas``, every 2 s) drops the copies of the global
    weights the engine broadcast to every worker down to one as tasks finish: the tasks
    then fetch the weights from one desktop, and when that desktop is lost the weights go
    with it and Dask cancels every task still waiting for them. The engine places the
    weights itself (``grid.dispatch``), so the scheduler must keep them where they were
    sent. (An embedded LocalCluster starts without it; a scheduler shared with other work
    keeps it stopped after the run.) Bounded by ``timeout_s``; a scheduler without the
    extension is left as it is."""
    def ask(method):
        return dask_client.sync(dask_client.scheduler.amm_handler, method=method,
                                callback_timeout=timeout_s)
    try:
        if not ask("running"):
            return False
        ask("stop")
        return True
    except Exception:  # noqa: BLE001 - no AMM extension there, or it did not answer in time
        return False


def _local_cluster(grid, security, local_directory: str) -> distributed.LocalCluster:
    """An embedded LocalCluster per ``grid`` (``security``: its own, TLS, or None); its
    scratch folder is removed again when it was created here and the cluster does not
    start (a failed start leaves nothing behind)."""
    scratch = pathlib.Path(local_directory)
    created = [p for p in (scratch, *scratch.parents) if not p.exists()][::-1]
    scratch.mkdir(parents=True, exist_ok=True)
    kwargs = dict(n_workers=grid.workers, threads_per_worker=grid.threads_per_worker,
                  processes=True, host=grid.host, local_directory=local_directory,
                  dashboard_address=grid.dashboard_address, silence_logs=logging.ERROR)
    if security is not None:
        kwargs.update(security=security, protocol="tls://")
    if grid.dashboard_address is None:
        # Dask's "no dashboard" still serves its HTTP routes (health, metrics) on port 8787
        # of the host, or on a random port when 8787 is taken, with a warning: a random port.
        kwargs["scheduler_kwargs"] = {"dashboard_address": _host_port(grid.host, 0)}
    try:
        # allowed-failures=0: a task whose worker dies errs with KilledWorker, which the
        # engine records as 'failed' (naming the lost worker) and re-submits itself;
        # Dask's default would re-run it silently and hide the loss from the records.
        # No MALLOC_TRIM_THRESHOLD_ in the workers' environment: see grid.plugin
        # (it makes XLA's buffers a mmap/munmap each: local training 1.85x slower).
        environ = {k: v for k, v in dask.config.get(
            "distributed.nanny.pre-spawn-environ", {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}
        with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                              "distributed.scheduler.active-memory-manager.start": False,
                              "distributed.nanny.pre-spawn-environ": environ,
                              **lean_settings(grid)}):
            return distributed.LocalCluster(**kwargs)
    except Exception as e:  # noqa: BLE001 - reported as one line
        if created:
            shutil.rmtree(created[0], ignore_errors=True)
        raise UserError(f"cannot start a LocalCluster on host {show(grid.host)}: "
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def _host_port(host: str, port: int) -> str:
    """``host:port`` (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def lean_settings(grid) -> dict:
    """Dask settings of an embedded LocalCluster that cost CPU the rounds need (both
    cores are busy in a steady round on a 2-core machine): the workers' statistical
    profiler (``grid.dask_profiler``; it samples every thread every 10 ms), the resource
    monitors' polling (system monitor every 2 s instead of 0.5 s, each nanny's look at
    its worker's memory every 0.5 s instead of 0.1 s: a worker over its memory limit is
    still stopped within half a second) and the event loops' tick (every 0.5 s instead
    of 20 ms: it only times the loop, and a loop blocked for over 3 s is still reported).
    Measured on an idle 2-worker LocalCluster: 104.6 ms of CPU per second with Dask's
    defaults, 17.3 ms with these (medians of 3, ``benchmarks/grid_idle_cpu.py``;
    docs/RESULTS.md, "The grid's own CPU: an idle cluster")."""
    return {"distributed.worker.profile.enabled": bool(grid.dask_profiler),
            "distributed.admin.system-monitor.interval": "2s",
            "distributed.worker.memory.monitor-interval": "500ms",
            "distributed.admin.tick.interval": "500ms"}


def connect(grid, security) -> distributed.Client:
    """A Client of the scheduler at ``grid.scheduler``; a one-line UserError saying why
    not: unreachable, a TLS certificate not trusted either way, TLS on one side only, or
    something that is not a Dask scheduler answering."""
    try:
        return distributed.Client(grid.scheduler, timeout=grid.connect_timeout_s,
                                  security=security)
    except (OSError, TimeoutError, ValueError):
        why = _why_not_connected(grid)
    except Exception as e:  # noqa: BLE001 - e.g. MemoryError reading another protocol's bytes
        why = (f"something answered at {show(grid.scheduler)}, but not a Dask scheduler "
               f"({type(e).__name__}); allowed: the address of a running `dask scheduler`")
    raise UserError(why or _unreachable(grid))


def _unreachable(grid) -> str:
    return (f"cannot reach the Dask scheduler at {show(grid.scheduler)} within "
            f"{grid.connect_timeout_s:g} s; allowed: the address of a running scheduler "
            "(is it started, and is the host/port right?)")


def require_listening(grid) -> None:
    """Refuse, before a run loads data and compiles, a ``grid.scheduler`` whose TCP port
    does not accept a connection within ``grid.connect_timeout_s`` seconds (it is retried
    every 0.2 s: a scheduler started a moment later is waited for): the one-line UserError
    of ``connect``. Only the port is probed (the config allows tcp:// and tls:// addresses
    with a port): whether a Dask scheduler answers there is ``connect``'s to say. No-op for
    an embedded cluster."""
    import socket
    import time
    from distributed.comm import parse_address, parse_host_port
    if grid.scheduler is None:
        return
    host, port = parse_host_port(parse_address(grid.scheduler)[1])
    deadline = time.monotonic() + grid.connect_timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            socket.create_connection((host, port), timeout=max(0.1, min(left, 5.0))).close()
            return
        except OSError:
            if time.monotonic() + 0.2 >= deadline:
                raise UserError(_unreachable(grid)) from None
            time.sleep(0.2)


def _why_not_connected(grid) -> Optional[str]:
    """What TLS says about a failed connection (None: nothing, e.g. nobody listens)."""
    from fedjax_grid.grid.certs import diagnose_tls, speaks_tls
    address, timeout = grid.scheduler, min(5.0, grid.connect_timeout_s)
    try:
        if address.startswith("tls://") and grid.tls_dir is not None:
            return diagnose_tls(address, grid.tls_dir, timeout)
        if speaks_tls(address, timeout):
            return (f"the scheduler at {show(address)} speaks TLS; allowed: "
                    f"{show('tls://' + address.split('://')[-1])} with grid.tls_dir set to the "
                    "`fedjax-grid certs` folder of its CA")
    except (OSError, ValueError):
        return None
    return None


def register_plugin(dask_client, plugin, timeout_s: float) -> dict:
    """Register ``plugin`` for current and future workers; worker address -> error line.

    Never raises for a worker's failure (another version, fedjax_grid not importable
    there): the engine's set-up check (``grid.health``) quarantines such workers. Bounded
    by ``timeout_s`` seconds, so a frozen worker cannot hang the start of a run (the
    scheduler keeps the plugin and applies it to every worker that joins).
    """
    from distributed.protocol.pickle import dumps
    try:
        responses = dask_client.sync(dask_client.scheduler.register_worker_plugin,
                                     plugin=dumps(plugin), name=plugin.name, idempotent=False,
                                     callback_timeout=timeout_s) or {}
    except (TimeoutError, asyncio.TimeoutError):
        return {}
    except Exception as e:  # noqa: BLE001 - a worker failed it (e.g. cannot unpickle it)
        # The scheduler stored the plugin before its broadcast failed: the healthy
        # workers got it; the set-up check names and quarantines the failing ones.
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        return {"(some worker)": text}
    errors = {}
    for addr, r in responses.items():
        if isinstance(r, dict) and r.get("status") != "OK":
            text = str(r.get("exception_text") or r.get("exception") or r)
            errors[addr] = text.splitlines()[0] if text else "set-up failed"
    return errors
