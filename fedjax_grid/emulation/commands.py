"""The command lines of an emulated grid's processes: ``dask scheduler`` in the hub,
``dask worker`` (with its nanny, as on a real desktop) in each desktop, all over TLS
with the grid's own certificates (``fedjax_grid.grid.certs``)."""
from __future__ import annotations

import math
import os
import sys

from fedjax_grid.emulation.naming import SCHEDULER_PORT


def _tls(state) -> list[str]:
    d = state.tls_dir
    return ["--tls-ca-file", str(d / "ca.pem"), "--tls-cert", str(d / "node.pem"),
            "--tls-key", str(d / "node.key")]


def scheduler_argv(state) -> list[str]:
    host = state.address.split("://", 1)[1].rsplit(":", 1)[0]
    return [sys.executable, "-m", "distributed.cli.dask_scheduler", "--protocol", "tls",
            "--host", host, "--port", str(SCHEDULER_PORT), "--no-dashboard", "--no-show",
            *_tls(state)]


def worker_argv(state, desktop) -> list[str]:
    """``dask worker`` of one desktop: its name, address, threads (ceil of its CPU share)
    and memory limit (its cgroup's), a scratch folder of its own."""
    scratch = state.folder / "scratch" / desktop.name
    return [sys.executable, "-m", "distributed.cli.dask_worker", state.address,
            "--name", desktop.name, "--host", desktop.address,
            "--nthreads", str(max(1, math.ceil(desktop.cpu))),
            "--memory-limit", str(desktop.memory_bytes), "--no-dashboard",
            "--local-directory", str(scratch), *_tls(state)]


#: Seconds a Dask connection of the grid survives without an answer (TCP user timeout and
#: keep-alive; Dask's default is 30 s). With the default, a desktop's link down for 20 s
#: ended its worker for good: TCP's retransmission back-off stretched the silence past
#: 30 s, the worker's connection to the scheduler broke, the worker stopped
#: ('worker-handle-scheduler-connection-broken') and its nanny closed with it. Measured on
#: this grid; a real grid with home links wants the same setting on every machine.
TCP_TIMEOUT = "120s"


def environment() -> dict:
    """The processes' environment: ours (PYTHONPATH, XLA_FLAGS, the compile cache) with
    the scheduler's allowed-failures at 0, as the engine records and retries failed
    tasks itself (``grid.cluster``), and connections that outlive a link drop of up to
    about a minute (``TCP_TIMEOUT``; unless the environment sets its own)."""
    env = dict(os.environ)
    env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = "0"
    env.setdefault("DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP", TCP_TIMEOUT)
    return env
