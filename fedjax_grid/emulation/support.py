"""Can this machine emulate a desktop grid? One line naming what is missing, or None.

``missing()`` checks cheaply (Linux, root, pyroute2, a usable cgroup hierarchy);
``probe()`` also tries each kernel feature once on throw-away objects (a network
namespace pair, a bridge, a veth pair, a tbf qdisc, a cgroup with a CPU quota,
a memory limit and the freezer) and removes them. Tests and notebooks skip with
``skip_reason()``; ``grid up`` stops with it (exit 2).
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Optional

from fedjax_grid.errors import UserError


class EmulationUnavailable(UserError):
    """This machine cannot emulate a grid; the message names what is missing."""


def missing() -> Optional[str]:
    """Why grid emulation cannot work here, in one line (None: nothing obvious lacks)."""
    if not sys.platform.startswith("linux"):
        return f"grid emulation needs Linux (network namespaces, tc, cgroups); this is {sys.platform}"
    if os.geteuid() != 0:
        return ("grid emulation needs root (network namespaces, tc and cgroups); "
                f"running as uid {os.geteuid()}")
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return "grid emulation needs the pyroute2 package (pip install pyroute2)"
    if not os.path.exists("/proc/self/ns/net"):
        return "grid emulation needs network namespaces (/proc/self/ns/net is missing)"
    from fedjax_grid.emulation.cgroups import detect
    version, _, why = detect()
    if version is None:
        return f"grid emulation needs cgroups with cpu, memory and freezer: {why}"
    return None


def _try_features(prefix: str) -> Optional[str]:
    from fedjax_grid.emulation import network, shaping
    from fedjax_grid.emulation.naming import Names
    n = Names(prefix)
    steps = [
        ("network namespaces", lambda: (network.create_namespace(n.hub_ns),
                                        network.create_namespace(n.desktop_ns(0)))),
        ("a Linux bridge", lambda: network.make_bridge(n.hub_ns, n.bridge, n.hub_ip)),
        ("veth pairs", lambda: network.add_desktop_link(n.hub_ns, n.bridge, n.hub_link(0),
                                                        n.desktop_ns(0), n.desktop_link(0),
                                                        n.desktop_ip(0))),
        ("the tbf qdisc (sch_tbf)", lambda: shaping.shape(n.hub_ns, n.hub_link(0), 1e6)),
        ("bridge port states", lambda: network.set_port_forwarding(n.hub_ns, n.hub_link(0), False)),
        ("cgroup CPU quota, memory limit and freezer", lambda: _try_cgroup(n.cgroup("probe"))),
    ]
    for feature, step in steps:
        try:
            step()
        except Exception as e:  # noqa: BLE001 - reported as the missing feature
            return (f"grid emulation needs {feature}, which this machine refused "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    return None


def _try_cgroup(rel: str) -> None:
    from fedjax_grid.emulation.cgroups import Cgroup
    g = Cgroup(rel)
    g.create()
    g.set_cpu(0.5)
    g.set_memory(256 * 2 ** 20)
    g.freeze()
    g.thaw()
    g.cpu_seconds()


def _clean(prefix: str) -> None:
    from fedjax_grid.emulation import network
    from fedjax_grid.emulation.cgroups import Cgroup
    from fedjax_grid.emulation.naming import Names
    n = Names(prefix)
    for ns in (n.desktop_ns(0), n.hub_ns):
        try:
            network.remove_namespace(ns)
        except OSError:
            pass
    for rel in (n.cgroup("probe"), prefix):
        try:
            Cgroup(rel).remove(timeout_s=2.0)
        except OSError:
            pass


def probe() -> Optional[str]:
    """``missing()``, then each kernel feature tried once (None: all work)."""
    reason = missing()
    if reason is not None:
        return reason
    from fedjax_grid.emulation.naming import new_prefix
    from fedjax_grid.emulation.network import namespaces
    prefix = new_prefix()
    while any(ns.startswith(prefix) for ns in namespaces()):
        prefix = new_prefix()
    try:
        return _try_features(prefix)
    finally:
        _clean(prefix)


@functools.lru_cache(maxsize=1)
def skip_reason() -> Optional[str]:
    """``probe()`` once per process: the one-line reason to skip an emulated-grid test
    or notebook section, or None when this machine can emulate a grid."""
    return probe()


def require() -> None:
    """Raise ``EmulationUnavailable`` (one line, exit 2 from the CLI) unless ``missing()``
    finds nothing."""
    reason = missing()
    if reason is not None:
        raise EmulationUnavailable(reason)
