"""Processes of an emulated grid: started inside a namespace and a cgroup, found
again by PID and start time, stopped by PID.

``spawn(argv, netns=..., cgroups=...)`` runs ``python -m fedjax_grid.emulation.launch``,
which enters the namespace and the cgroups and then execs ``argv``: the process
and all its children are inside both from their first instruction. Processes
get their own session (a terminal's Ctrl-C does not reach them) and log to a file.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Iterable, Optional

from fedjax_grid.emulation.state import Proc


def start_time(pid: int) -> Optional[int]:
    """Start time of ``pid`` in clock ticks after boot (None: no such process)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[19])


def alive(proc: Optional[Proc]) -> bool:
    """True when the recorded process still runs (same PID and start time, not a zombie)."""
    if proc is None or start_time(proc.pid) != proc.start:
        return False
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ref(pid: int) -> Proc:
    return Proc(pid=pid, start=start_time(pid) or 0)


def spawn(argv: list[str], *, netns: str, cgroups: Iterable[str], log_path,
          env: Optional[dict] = None) -> Proc:
    """Start ``argv`` inside network namespace ``netns`` and the cgroup directories
    ``cgroups``; stdout and stderr go to ``log_path``."""
    launcher = [sys.executable, "-m", "fedjax_grid.emulation.launch", "--netns", netns]
    for d in cgroups:
        launcher += ["--cgroup", d]
    with open(log_path, "ab") as log:
        p = subprocess.Popen(launcher + ["--", *argv], stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, env=env, start_new_session=True,
                             close_fds=True)
    return ref(p.pid)


def kill(procs: Iterable[Optional[Proc]], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to each recorded process that still runs."""
    for p in procs:
        if alive(p):
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass


def wait_gone(procs: Iterable[Optional[Proc]], timeout_s: float) -> bool:
    """Wait until none of ``procs`` runs (reaping our own children); True when so."""
    procs = [p for p in procs if p is not None]
    end = time.monotonic() + timeout_s
    while True:
        for p in procs:
            try:
                os.waitpid(p.pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if not any(alive(p) for p in procs) or time.monotonic() > end:
            return not any(alive(p) for p in procs)
        time.sleep(0.05)


def netns_pids(names: Iterable[str]) -> list[int]:
    """PIDs of processes whose network namespace is one of the named ``names``."""
    inodes = set()
    for n in names:
        try:
            inodes.add(os.stat(f"/var/run/netns/{n}").st_ino)
        except OSError:
            pass
    if not inodes:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    out.append(int(entry))
            except OSError:
                pass
    return out
