"""Real processes on 127.0.0.1 for the fault suite: a `dask scheduler` and `dask worker`s.

The scheduler runs with ``allowed-failures=0`` so that a task whose worker dies errs
with ``KilledWorker`` (which the engine records as ``failed`` and re-submits) instead
of being silently re-run by Dask. Workers run without a nanny (``--no-nanny``), so the
PID we hold *is* the worker process: ``kill -9`` of it really loses the worker.
Every process is started here and stopped by its own PID.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
import sys

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dask_exe() -> str:
    exe = shutil.which("dask") or os.path.join(os.path.dirname(sys.executable), "dask")
    if not os.path.exists(exe):
        pytest.skip("the `dask` command is not installed")
    return exe


def stop(procs, timeout=20) -> None:
    """SIGTERM (then SIGKILL) exactly the given processes."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


class ExternalGrid:
    """A scheduler plus worker processes on loopback, with helpers to add/kill workers."""

    def __init__(self, tmp, *, tls: dict | None = None):
        self.tmp = tmp
        self.tls = tls or {}
        self.port = free_port()
        proto = "tls" if tls else "tcp"
        self.address = f"{proto}://127.0.0.1:{self.port}"
        self.workers: list[subprocess.Popen] = []
        self.scheduler = None
        self._n = 0

    def _tls_args(self, which="scheduler") -> list[str]:
        if not self.tls:
            return []
        return ["--tls-ca-file", self.tls["ca"], "--tls-cert", self.tls["cert"],
                "--tls-key", self.tls["key"]]

    def start_scheduler(self):
        env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0")
        self.scheduler = subprocess.Popen(
            [dask_exe(), "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
             "--no-dashboard", "--no-show", *self._tls_args()],
            stdout=subprocess.DEVNULL, stderr=open(self.tmp / f"scheduler-{self.port}.log", "w"),
            env=env)
        return self.scheduler

    def start_worker(self, *, tls_args: list[str] | None = None, name: str | None = None,
                     env: dict | None = None, nanny: bool = False):
        """Start one ``dask worker``; ``env``: its environment (default: ours); ``nanny``:
        under a nanny (as `dask worker` runs by default) instead of ``--no-nanny``."""
        i = self._n
        self._n += 1
        args = self._tls_args() if tls_args is None else tls_args
        p = subprocess.Popen(
            [dask_exe(), "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1",
             "--no-dashboard", "--nanny" if nanny else "--no-nanny",
             "--local-directory", str(self.tmp / f"w{i}"),
             "--name", name or f"desktop-{i}", "--death-timeout", "60", *args],
            stdout=subprocess.DEVNULL, stderr=open(self.tmp / f"worker{i}.log", "w"), env=env)
        self.workers.append(p)
        return p

    def alive_workers(self) -> list[subprocess.Popen]:
        return [p for p in self.workers if p.poll() is None]

    def client(self, timeout=60):
        from distributed import Client
        sec = None
        if self.tls:
            from distributed.security import Security
            sec = Security(tls_ca_file=self.tls["ca"], tls_client_cert=self.tls["client_cert"],
                           tls_client_key=self.tls["client_key"], require_encryption=True)
        return Client(self.address, timeout=timeout, security=sec)

    def wait_for(self, n: int, timeout=90) -> dict:
        """Block until n workers are connected; return address -> pid. A worker whose
        connection drops right after registering (a loaded machine) is waited for again."""
        from distributed.comm.core import CommClosedError
        for attempt in range(3):
            try:
                with self.client() as c:
                    c.wait_for_workers(n, timeout=timeout)
                    return c.run(os.getpid)
            except (CommClosedError, OSError):
                if attempt == 2:
                    raise
                time.sleep(2.0)

    def ensure(self, n: int) -> dict:
        """Top the cluster up to n live workers (tests may kill some)."""
        for _ in range(n - len(self.alive_workers())):
            self.start_worker()
        return self.wait_for(n)

    def stop(self):
        stop(self.workers + ([self.scheduler] if self.scheduler else []))


@pytest.fixture(scope="module")
def external_grid(tmp_path_factory):
    """One scheduler + three workers per test module (stopped by PID afterwards)."""
    tmp = tmp_path_factory.mktemp("grid")
    g = ExternalGrid(tmp)
    g.start_scheduler()
    for _ in range(3):
        g.start_worker()
    try:
        g.wait_for(3)
        yield g
    finally:
        g.stop()


#: sitecustomize.py bodies that turn a real `dask worker` into a broken desktop.
BROKEN_DESKTOPS = {
    # Another fedjax_grid release installed on that desktop.
    "other-version": "import fedjax_grid.version\nfedjax_grid.version.__version__ = '0.0.9'\n",
    # fedjax_grid not installed there at all: every import of it fails.
    "no-package": (
        "import sys\n"
        "class _NoFedjaxGrid:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'fedjax_grid' or name.startswith('fedjax_grid.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _NoFedjaxGrid())\n"),
    # Installed and the right version, but every client task fails (a broken disk or
    # driver): client_update is replaced by one that raises.
    "failing-tasks": (
        "import fedjax_grid.grid.tasks as _t\n"
        "def client_update(*a, **k):\n"
        "    raise OSError('I/O error: this desktop is broken')\n"
        "_t.client_update = client_update\n"),
    # The same, but each task fails only after 3 s of work: tasks queue up there.
    "slow-failing-tasks": (
        "import time\n"
        "import fedjax_grid.grid.tasks as _t\n"
        "def client_update(*a, **k):\n"
        "    time.sleep(3.0)\n"
        "    raise OSError('I/O error: this desktop is broken')\n"
        "_t.client_update = client_update\n"),
}


def broken_env(tmp, kind: str) -> dict:
    """Environment for a worker of kind ``kind`` (see ``BROKEN_DESKTOPS``): a
    sitecustomize.py in its own folder first on PYTHONPATH."""
    d = pathlib.Path(tmp) / f"site-{kind}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "sitecustomize.py").write_text(BROKEN_DESKTOPS[kind])
    path = os.pathsep.join([str(d)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    return dict(os.environ, PYTHONPATH=path)


def kill_cli_after_first_checkpoint(args: list, out, timeout: float = 240) -> None:
    """Start ``fedjax-grid <args> --out <out>`` and SIGKILL it as soon as its first
    checkpoint is written (a coordinator lost mid-run); fails if it ends before that."""
    from fedjax_grid.grid.checkpoint import latest_checkpoint
    proc = subprocess.Popen([sys.executable, "-m", "fedjax_grid.cli", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.time() + timeout
        while time.time() < end and proc.poll() is None:
            if latest_checkpoint(pathlib.Path(out) / "checkpoints") is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "coordinator finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()


def run_cli(*args, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "fedjax_grid.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kw)


class _PickleBomb:
    """Unpickling this creates the file at ``path`` (the proof that a loader unpickled)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def write_pickled_npz(path, marker, keys=("header",)) -> None:
    """An ``.npz`` at ``path`` whose ``keys`` hold pickled objects that touch ``marker``."""
    import numpy as np
    with open(path, "wb") as f:
        np.savez(f, **{k: np.array([_PickleBomb(marker)], dtype=object) for k in keys})


def signal_when_busy(run, address: str, pid: int, sig=signal.SIGKILL, *, settle_s: float = 0.5,
                     within_s: float = 120.0, poll_s: float = 0.1):
    """Start a thread that sends ``sig`` to worker ``pid`` once the scheduler says the
    worker at ``address`` is running a task of ``run`` (after ``settle_s``); returns the
    thread (``.done``: an Event set when the signal was sent)."""
    import threading
    done = threading.Event()

    def strike():
        end = time.time() + within_s
        while time.time() < end:
            if run.grid.client.processing().get(address):
                time.sleep(settle_s)
                os.kill(pid, sig)
                done.set()
                return
            time.sleep(poll_s)

    thread = threading.Thread(target=strike, daemon=True)
    thread.done = done
    thread.start()
    return thread


def run_while_killing(run, address: str, pid: int) -> None:
    """``run.run()`` (then ``close``) while the worker ``pid`` at ``address`` is SIGKILLed
    once busy with one of the run's tasks; asserts that it was killed."""
    run.start()
    killer = signal_when_busy(run, address, pid)
    try:
        run.run()
    finally:
        run.close()
    killer.join(timeout=5)
    assert killer.done.is_set()
