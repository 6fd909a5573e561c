"""An emulated desktop grid on one Linux machine (root): real processes, real links.

Each desktop is a ``dask worker`` in its own network namespace, joined to the
scheduler's hub namespace by a veth pair whose two directions are rate-limited
(tc tbf), inside its own cgroup (CPU quota, memory limit, freezer). Availability
events (link down, freeze, kill and rejoin) come from a seeded schedule in the
grid's profile or from the API, and are logged with timestamps.

Modules, one job each:
  naming      names and addresses from a grid's run-unique prefix
  support     what this machine lacks, in one line (skip reasons)
  network     namespaces, bridge, veth pairs, addresses, bridge-port link state (netlink)
  shaping     uplink/downlink rates (tbf)
  cgroups     CPU quota, memory limit, freezer, CPU accounting (cgroup v1 and v2)
  processes   start in a namespace + cgroup (via ``launch``), find and stop by PID
  state       the state file: everything ``up`` made
  commands    the scheduler's and workers' command lines (TLS)
  lifecycle   up and down
  control     link down/up, freeze/thaw, kill/rejoin, status
  profiles    grid profiles (YAML, pydantic)
  schedule    seeded availability schedule (pure)
  replay      the process that replays a schedule
  events      the event log, ``grid_events(address, t_start, t_end)``
  attach      how a coordinator reaches the grid (its hub namespace)
  api         ``EmulatedGrid``
  cli         ``fedjax-grid grid up|status|down|...``

Without root or a kernel feature, ``skip_reason()`` names what is missing.
"""
from __future__ import annotations


def skip_reason():
    """One line saying why this machine cannot emulate a grid, or None when it can."""
    from fedjax_grid.emulation.support import skip_reason as _reason
    return _reason()


def __getattr__(name):
    if name == "EmulatedGrid":
        from fedjax_grid.emulation.api import EmulatedGrid
        return EmulatedGrid
    if name == "grid_events":
        from fedjax_grid.emulation.events import grid_events
        return grid_events
    raise AttributeError(name)


__all__ = ["EmulatedGrid", "grid_events", "skip_reason"]
