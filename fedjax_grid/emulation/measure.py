"""Measurements on an emulated grid: real bytes through a desktop's link, real CPU time
in its cgroup (tests and ``benchmarks/emulation.py``)."""
from __future__ import annotations

import socket
import sys
import threading
import time

from fedjax_grid.emulation.attach import run_in_namespace
from fedjax_grid.emulation.cgroups import Cgroup

CHUNK = 1 << 16


def _receive(listener: socket.socket, out: dict) -> None:
    conn, _ = listener.accept()
    got, first = 0, None
    with conn:
        while True:
            b = conn.recv(CHUNK)
            if not b:
                break
            if first is None:
                first = time.perf_counter()
            got += len(b)
    out["bytes"], out["seconds"] = got, time.perf_counter() - (first or time.perf_counter())


def link_throughput(state, desktop: str, direction: str, nbytes: int) -> float:
    """Payload bits/s of one TCP stream of ``nbytes`` across ``desktop``'s link;
    ``direction`` 'up' (desktop -> hub) or 'down' (hub -> desktop). Timed at the
    receiver from its first byte to the end (the token bucket's burst excluded)."""
    d = state.desktop(desktop)
    hub_ip = state.address.split("://", 1)[1].rsplit(":", 1)[0]
    recv_ns, send_ns, host = ((state.hub_ns, d.netns, hub_ip) if direction == "up"
                              else (d.netns, state.hub_ns, d.address))
    listener = run_in_namespace(recv_ns, socket.create_server, (host, 0))
    port, out = listener.getsockname()[1], {}
    t = threading.Thread(target=_receive, args=(listener, out), daemon=True)
    t.start()

    def send():
        with socket.create_connection((host, port), timeout=30) as s:
            buf, sent = b"\0" * CHUNK, 0
            while sent < nbytes:
                s.sendall(buf[:min(CHUNK, nbytes - sent)])
                sent += min(CHUNK, nbytes - sent)

    try:
        run_in_namespace(send_ns, send)
        t.join(timeout=600)
    finally:
        listener.close()
    return out["bytes"] * 8 / out["seconds"]


def _wait_exec(pid: int, marker: str, timeout_s: float = 30.0) -> None:
    """Wait until process ``pid`` runs the program whose command line holds ``marker``
    (the launcher has joined the cgroup and exec'd it)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    return
        except OSError:
            return
        time.sleep(0.05)


def cpu_share(state, desktop: str, seconds: float = 3.0, *, boost: bool = True) -> tuple[float, float]:
    """(cores used by a busy loop in ``desktop``'s cgroup, cores used by an uncapped busy
    loop in the grid's hub cgroup at the same time), over ``seconds`` s. The desktop's
    figure is its cgroup's whole CPU time (the idle worker's too). ``boost``: the grid's
    cgroup gets the highest CPU weight meanwhile, so that other load on the machine does
    not hide the quota (a quota is a ceiling, not a reservation)."""
    from fedjax_grid.emulation.processes import kill, spawn, wait_gone
    d = state.desktop(desktop)
    desk, hub, grid = (Cgroup(rel, state.cgroup_version, state.cgroup_mounts)
                       for rel in (d.cgroup, state.cgroups[0], state.cgroups[-1]))
    weight = grid.weight()
    loops = [spawn([sys.executable, "-c", "while True: pass"], netns=ns, cgroups=g.dirs(),
                   log_path="/dev/null") for ns, g in ((d.netns, desk), (state.hub_ns, hub))]
    try:
        if boost:
            grid.set_weight(10000)
        for loop in loops:
            _wait_exec(loop.pid, "while True")
        time.sleep(0.3)
        c0, t0 = [desk.cpu_seconds(), hub.cpu_seconds()], time.monotonic()
        time.sleep(seconds)
        dt = time.monotonic() - t0
        return (desk.cpu_seconds() - c0[0]) / dt, (hub.cpu_seconds() - c0[1]) / dt
    finally:
        grid.set_weight(weight)
        kill(loops)
        wait_gone(loops, 5.0)
