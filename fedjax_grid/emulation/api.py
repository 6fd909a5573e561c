"""``EmulatedGrid``: an emulated desktop grid for tests, benchmarks and notebooks.

    from fedjax_grid.emulation import EmulatedGrid
    with EmulatedGrid("home", desktops=2) as g:
        g.address                  # tls://10.x.y.1:8786
        g.link_down("desk1", 20)   # back up after 20 s (a timer)
        g.freeze("desk2"); g.thaw("desk2")
        g.kill("desk2"); g.rejoin("desk2")
        with g.entered():          # this thread joins the hub: run an experiment here
            ...

``profile``: a built-in name, a YAML path, a ``profiles.Profile`` or its parsed mapping;
``schedule=True`` replays the profile's availability schedule from ``up`` on (off by
default: tests act on the desktops themselves); ``start_schedule()`` (re)starts it
with time 0 now, e.g. right before a run. Leaving the ``with`` block (or ``close()``)
removes everything, as ``fedjax-grid grid down`` does.
"""
from __future__ import annotations

import contextlib
import time
from typing import Optional

from fedjax_grid.emulation import attach
from fedjax_grid.emulation.control import GridControl
from fedjax_grid.emulation.events import grid_events
from fedjax_grid.emulation.lifecycle import down, start_schedule, up
from fedjax_grid.emulation.profiles import Profile, load_profile


class EmulatedGrid:
    """Desktops started now (``fedjax-grid grid up``), each a ``dask worker`` in its own
    network namespace and cgroup behind a shaped veth link; ``address`` is the TLS
    scheduler's. ``desktops``: how many (default: the profile's). Controls: ``link_down``
    / ``link_up``, ``freeze`` / ``thaw``, ``kill`` / ``rejoin``; ``events()`` the log;
    ``close()`` (or leaving ``with``) removes exactly what ``up`` made. Needs root."""

    def __init__(self, profile="home", desktops: Optional[int] = None, *, schedule: bool = False,
                 seed: Optional[int] = None):
        if isinstance(profile, dict):   # parsed YAML, e.g. {desktops: 2, machines: [...]}
            from fedjax_grid.emulation.profiles import from_dict
            profile = from_dict(profile, "custom")
        self.profile = profile if isinstance(profile, Profile) else load_profile(profile)
        self.state = up(self.profile, desktops, schedule=schedule, seed=seed)
        self.control = GridControl(self.state, source="api")

    def __enter__(self) -> "EmulatedGrid":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> dict:
        """Remove the grid (idempotent); returns what was removed."""
        self.control.cancel_timers()
        return down(self.state)

    @property
    def address(self) -> str:
        return self.state.address

    @property
    def prefix(self) -> str:
        return self.state.prefix

    @property
    def tls_dir(self) -> str:
        return str(self.state.tls_dir)

    @property
    def desktops(self) -> list[str]:
        return [d.name for d in self.state.desktops]

    def link_down(self, name: str, seconds: Optional[float] = None) -> None:
        self.control.link_down(name, seconds)

    def link_up(self, name: str) -> None:
        self.control.link_up(name)

    def freeze(self, name: str, seconds: Optional[float] = None) -> None:
        self.control.freeze(name, seconds)

    def thaw(self, name: str) -> None:
        self.control.thaw(name)

    def kill(self, name: str, seconds: Optional[float] = None) -> None:
        self.control.kill(name, seconds)

    def rejoin(self, name: str, wait_s: Optional[float] = 120.0) -> None:
        """Start the desktop's worker again; wait until it is registered (None: don't)."""
        self.control.rejoin(name)
        if wait_s is not None:
            self.wait_for([name], wait_s)

    def start_schedule(self, seed: Optional[int] = None) -> None:
        """Replay the profile's availability schedule from now (time 0 = now), seeded with
        ``seed`` (default: the grid's); a replay in progress stops first."""
        start_schedule(self.state, seed)

    def wait_for(self, names: list[str], timeout_s: float = 120.0) -> dict:
        """Block until workers ``names`` are registered; name -> worker address."""
        end = time.monotonic() + timeout_s
        while True:
            seen = attach.worker_names(self.state) or {}
            if all(n in seen for n in names):
                return {n: seen[n] for n in names}
            if time.monotonic() > end:
                raise TimeoutError(f"workers {[n for n in names if n not in seen]} not registered "
                                   f"within {timeout_s:g} s")
            time.sleep(0.5)

    def status(self):
        """One row per desktop (name, kind, cpu, memory_bytes, up_bps, down_bps, address, state)."""
        import pandas as pd
        return pd.DataFrame(self.control.status())

    def cpu_seconds(self, name: str) -> float:
        """CPU time the desktop's processes have used (s)."""
        return self.control.cgroup(name).cpu_seconds()

    def client(self, timeout_s: float = 30.0):
        """A Dask Client to the grid (its IO loop in the hub namespace); close it yourself."""
        return attach.client(self.state, timeout_s)

    def run_in_hub(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on a thread inside the hub namespace."""
        return attach.run_in_namespace(self.state.hub_ns, fn, *args, **kwargs)

    def run_in_desktop(self, name: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on a thread inside desktop ``name``'s namespace."""
        return attach.run_in_namespace(self.state.desktop(name).netns, fn, *args, **kwargs)

    @contextlib.contextmanager
    def entered(self):
        """This thread (and threads it starts meanwhile) in the hub namespace, e.g. for an
        in-process ``FederatedRun`` with ``grid.scheduler=g.address``."""
        from pyroute2 import netns
        netns.pushns(self.state.hub_ns)
        try:
            yield self
        finally:
            netns.popns()

    def events(self, t_start: float = 0.0, t_end: float = float("inf")):
        """The grid's event log between two Unix times, as a DataFrame."""
        return grid_events(self.address, t_start, t_end)
