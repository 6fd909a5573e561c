"""Operating a running emulated grid: a desktop's link, power and state.

``GridControl(state)`` acts on the desktops a state file lists; every action is
written to the grid's event log (``events``) with its source ('api', 'cli',
'schedule'):

  link_down(name, seconds=None) / link_up(name)   the desktop's bridge port off / on
  freeze(name) / thaw(name)                      cgroup freezer: every process stops
  kill(name) / rejoin(name)                      SIGKILL its processes / start its
                                                 ``dask worker`` again, same name
  status()                                       one dict per desktop (see STATUS_KEYS)
"""
from __future__ import annotations

import threading
from typing import Optional

from fedjax_grid.emulation import network, processes
from fedjax_grid.emulation.cgroups import Cgroup
from fedjax_grid.emulation.commands import environment, worker_argv
from fedjax_grid.emulation.events import log_event
from fedjax_grid.emulation.state import GridState, load, lock, save

STATUS_KEYS = ("name", "kind", "cpu", "memory_bytes", "up_bps", "down_bps", "address", "state")


class GridControl:
    """Actions on the desktops of ``state`` (a ``GridState``)."""

    def __init__(self, state: GridState, source: str = "api"):
        self.state, self.source = state, source
        self._timers: list[threading.Timer] = []

    def _desktop(self, name: str):
        try:
            return self.state.desktop(name)
        except KeyError:
            names = ", ".join(d.name for d in self.state.desktops)
            from fedjax_grid.errors import UserError, show
            raise UserError(f"unknown desktop {show(name)} in grid {self.state.prefix}; "
                            f"allowed: {names}") from None

    def cgroup(self, name: str) -> Cgroup:
        d = self._desktop(name)
        return Cgroup(d.cgroup, self.state.cgroup_version, self.state.cgroup_mounts)

    def _log(self, name: str, event: str, duration_s=None, detail: str = "") -> None:
        log_event(self.state.events_path, name, event, duration_s=duration_s,
                  source=self.source, detail=detail)

    def _later(self, seconds: Optional[float], fn, name: str) -> None:
        if seconds is not None:
            t = threading.Timer(seconds, fn, args=(name,))
            t.daemon = True
            t.start()
            self._timers.append(t)

    def link_down(self, name: str, seconds: Optional[float] = None, *, restore: bool = True) -> None:
        """Drop everything the desktop sends or receives; up again after ``seconds``
        (None: until ``link_up``; ``restore=False``: ``seconds`` is only logged)."""
        network.set_port_forwarding(self.state.hub_ns, self._desktop(name).hub_link, False)
        self._log(name, "link_down", seconds)
        self._later(seconds if restore else None, self.link_up, name)

    def link_up(self, name: str) -> None:
        network.set_port_forwarding(self.state.hub_ns, self._desktop(name).hub_link, True)
        self._log(name, "link_up")

    def link_is_up(self, name: str) -> bool:
        return network.port_forwarding(self.state.hub_ns, self._desktop(name).hub_link)

    def freeze(self, name: str, seconds: Optional[float] = None, *, restore: bool = True) -> None:
        """Stop every process of the desktop (the cgroup freezer); thawed after ``seconds``."""
        self.cgroup(name).freeze()
        self._log(name, "freeze", seconds)
        self._later(seconds if restore else None, self.thaw, name)

    def thaw(self, name: str) -> None:
        self.cgroup(name).thaw()
        self._log(name, "thaw")

    def kill(self, name: str, seconds: Optional[float] = None, *, restore: bool = True) -> None:
        """Power the desktop off: SIGKILL its nanny and worker; rejoins after ``seconds``."""
        self.cgroup(name).kill()
        self._log(name, "kill", seconds)
        self._later(seconds if restore else None, self.rejoin, name)

    def rejoin(self, name: str) -> None:
        """Start the desktop's ``dask worker`` again (same name, address and limits)."""
        if self.cgroup(name).pids():
            self._log(name, "rejoin", detail="already running: nothing started")
            return
        start_worker(self.state, self._desktop(name))
        self._log(name, "rejoin")

    def desktop_state(self, name: str) -> str:
        """'running', 'frozen', 'link-down', 'dead' (no process), or a '+'-joined mix."""
        g = self.cgroup(name)
        if not g.pids():
            return "dead"
        parts = [p for p, on in (("frozen", g.frozen()), ("link-down", not self.link_is_up(name)))
                 if on]
        return "+".join(parts) or "running"

    def status(self) -> list[dict]:
        """One row per desktop: STATUS_KEYS (units: cores, bytes, bit/s)."""
        rows = []
        for d in self.state.desktops:
            row = {k: getattr(d, k) for k in STATUS_KEYS if k != "state"}
            row["state"] = self.desktop_state(d.name)
            rows.append(row)
        return rows

    def cancel_timers(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()


def start_worker(state: GridState, desktop) -> None:
    """Start ``dask worker`` of ``desktop`` in its namespace and cgroup; record its PID."""
    (state.folder / "scratch" / desktop.name).mkdir(parents=True, exist_ok=True)
    g = Cgroup(desktop.cgroup, state.cgroup_version, state.cgroup_mounts)
    proc = processes.spawn(worker_argv(state, desktop), netns=desktop.netns, cgroups=g.dirs(),
                           log_path=state.folder / "logs" / f"{desktop.name}.log",
                           env=environment())
    with lock(state.prefix):
        current = load(state.prefix) or state
        current.desktop(desktop.name).proc = proc
        save(current)
    desktop.proc = proc
