"""The emulated grid's network: namespaces, a bridge, veth pairs and addresses (netlink).

Every change goes through pyroute2 (netlink), never through string-built shell
commands. The layout (names from ``naming.Names``)::

    hub namespace                          desktop namespace i
    [bridge 10.a.b.1/24] -- port h<i> ==veth== d<i> [10.a.b.<10+i>/24]

The scheduler (and a coordinator that joins the hub) talk to desktop i across
its veth pair; nothing is added to the root namespace. A desktop's link is
"down" when its bridge port is disabled: both ends stay up with carrier, frames
are dropped silently in the bridge, and open TCP connections retransmit until
the port forwards again (a home router losing its uplink, not a pulled cable).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import functools
import socket

from pyroute2 import IPRoute, netns
from pyroute2.netlink import NLA_F_NESTED, NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_SETLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

#: Linux bridge port states (include/uapi/linux/if_bridge.h).
BR_STATE_DISABLED, BR_STATE_FORWARDING = 0, 3
PREFIXLEN = 24
#: Address ranges that must appear only inside the grid's own namespaces (RFC 1918).
PRIVATE_PREFIXES = ("10.", "192.168.") + tuple(f"172.{i}." for i in range(16, 32))


def outside_event_loop(fn):
    """Run ``fn`` on a helper thread when this thread runs an asyncio loop (a Jupyter
    kernel): pyroute2's synchronous API runs its own loop and cannot nest in one."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return fn(*args, **kwargs)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(fn, *args, **kwargs).result()
    return wrapper


def namespaces() -> list[str]:
    """Names of the named network namespaces (/var/run/netns)."""
    return list(netns.listnetns())


@outside_event_loop
def create_namespace(name: str) -> None:
    """A new named network namespace with its loopback up."""
    netns.create(name)
    with IPRoute(netns=name, flags=0) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


def remove_namespace(name: str) -> bool:
    """Remove a named namespace (its links go with it); False when it did not exist."""
    if name not in namespaces():
        return False
    netns.remove(name)
    return True


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise OSError(errno.ENODEV, f"no link {ifname}")
    return found[0]


@outside_event_loop
def make_bridge(ns: str, bridge: str, address: str) -> None:
    """A bridge with ``address``/24 in namespace ``ns``, up (STP off: ports forward at once)."""
    with IPRoute(netns=ns, flags=0) as ipr:
        ipr.link("add", ifname=bridge, kind="bridge", br_stp_state=0, br_forward_delay=0)
        idx = _index(ipr, bridge)
        ipr.addr("add", index=idx, address=address, prefixlen=PREFIXLEN)
        ipr.link("set", index=idx, state="up")


@outside_event_loop
def add_desktop_link(hub_ns: str, bridge: str, hub_end: str, desk_ns: str, desk_end: str,
                     address: str) -> None:
    """A veth pair made inside the hub namespace with its peer born in the desktop's
    namespace (it never exists in the root namespace); the hub end joins the bridge,
    the desktop end gets ``address``/24. Both ends up."""
    with IPRoute(netns=hub_ns, flags=0) as ipr:
        ipr.link("add", ifname=hub_end, kind="veth",
                 peer={"ifname": desk_end, "net_ns_fd": desk_ns})
        ipr.link("set", index=_index(ipr, hub_end), master=_index(ipr, bridge), state="up")
    with IPRoute(netns=desk_ns, flags=0) as ipr:
        idx = _index(ipr, desk_end)
        ipr.addr("add", index=idx, address=address, prefixlen=PREFIXLEN)
        ipr.link("set", index=idx, state="up")


@outside_event_loop
def set_port_forwarding(hub_ns: str, port: str, forwarding: bool) -> None:
    """Enable (link up) or disable (link down) a bridge port.

    pyroute2's ``brport('set', state=...)`` sets the *link* state instead, and its
    ``IFLA_PROTINFO`` lacks the nested flag the kernel needs; this sends the
    message as iproute2's ``bridge link set dev PORT state N`` does.
    """
    with IPRoute(netns=hub_ns, flags=0) as ipr:
        msg = ifinfmsg()
        msg["family"] = socket.AF_BRIDGE
        msg["index"] = _index(ipr, port)
        state = BR_STATE_FORWARDING if forwarding else BR_STATE_DISABLED
        msg["attrs"] = [("IFLA_PROTINFO", {"attrs": [("IFLA_BRPORT_STATE", state)]}, NLA_F_NESTED)]
        ipr.status["nlm_generator"] = False  # pyroute2 0.9: the sync nlm_request reads it
        ipr.nlm_request(msg, msg_type=RTM_SETLINK, msg_flags=NLM_F_REQUEST | NLM_F_ACK)


@outside_event_loop
def port_forwarding(hub_ns: str, port: str) -> bool:
    """True when bridge port ``port`` forwards (the desktop's link is up)."""
    with IPRoute(netns=hub_ns, flags=0) as ipr:
        for msg in ipr.brport("show", index=_index(ipr, port)):
            return msg.get_nested("IFLA_PROTINFO", "IFLA_BRPORT_STATE") == BR_STATE_FORWARDING
    return False


@outside_event_loop
def links(ns: str | None = None) -> list[str]:
    """Interface names in namespace ``ns`` (None: the root namespace)."""
    kwargs = {} if ns is None else {"netns": ns, "flags": 0}
    with IPRoute(**kwargs) as ipr:
        return [m.get_attr("IFLA_IFNAME") for m in ipr.get_links()]


@outside_event_loop
def remove_link(ifname: str, ns: str | None = None) -> bool:
    """Delete a link by name (its veth peer goes too); False when it did not exist."""
    kwargs = {} if ns is None else {"netns": ns, "flags": 0}
    with IPRoute(**kwargs) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return False
        ipr.link("del", index=found[0])
        return True
