"""Names and addresses of one emulated grid, all derived from its run-unique prefix.

Every namespace, link and cgroup an emulated grid makes carries its prefix
``fjg<4 hex>`` (e.g. ``fjg3a7c``), so that ``grid down`` removes exactly those:

  fjg3a7c-hub        network namespace of the scheduler side (the coordinator joins it)
  fjg3a7c-br         bridge in the hub namespace, address 10.58.124.1/24
  fjg3a7c-d<i>       namespace of desktop i, and the desktop's end of its veth pair
                     (address 10.58.124.<10+i>/24)
  fjg3a7c-h<i>       the hub's end of desktop i's veth pair (a port of the bridge)
  <cgroup root>/fjg3a7c/{hub,d<i>}   cgroups of the scheduler and of desktop i

The subnet 10.<a>.<b>.0/24 is taken from the prefix's hex digits; it exists only
inside the grid's own namespaces (nothing private is added to the root namespace).
Interface names stay within Linux's 15 characters.
"""
from __future__ import annotations

import dataclasses
import re
import secrets

#: A grid prefix: "fjg" and 4 lower-case hex digits.
PREFIX_RE = re.compile(r"^fjg[0-9a-f]{4}$")
#: Most desktops one emulated grid may have (addresses .10 to .209 of its /24).
MAX_DESKTOPS = 200
#: TCP port of the scheduler inside the hub namespace.
SCHEDULER_PORT = 8786


def new_prefix() -> str:
    """A fresh random prefix ``fjg<4 hex>`` (callers check it is unused)."""
    return "fjg" + secrets.token_hex(2)


@dataclasses.dataclass(frozen=True)
class Names:
    """The names and addresses of grid ``prefix``."""
    prefix: str

    def __post_init__(self):
        if not PREFIX_RE.match(self.prefix):
            raise ValueError(f"not a grid prefix: {self.prefix!r} (expected fjg and 4 hex digits)")

    @property
    def hub_ns(self) -> str:
        return f"{self.prefix}-hub"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br"

    @property
    def subnet(self) -> str:
        """The grid's private /24, e.g. ``10.58.124``."""
        h = self.prefix[3:]
        return f"10.{int(h[:2], 16)}.{int(h[2:], 16)}"

    @property
    def hub_ip(self) -> str:
        return f"{self.subnet}.1"

    @property
    def scheduler_address(self) -> str:
        return f"tls://{self.hub_ip}:{SCHEDULER_PORT}"

    def desktop_ns(self, i: int) -> str:
        return f"{self.prefix}-d{i}"

    def desktop_link(self, i: int) -> str:
        """The desktop's end of its veth pair (in the desktop's namespace)."""
        return f"{self.prefix}-d{i}"

    def hub_link(self, i: int) -> str:
        """The hub's end of desktop i's veth pair (a bridge port in the hub namespace)."""
        return f"{self.prefix}-h{i}"

    def desktop_ip(self, i: int) -> str:
        if not 0 <= i < MAX_DESKTOPS:
            raise ValueError(f"desktop index {i} out of [0, {MAX_DESKTOPS})")
        return f"{self.subnet}.{10 + i}"

    def cgroup(self, part: str) -> str:
        """Relative cgroup path of ``part`` ('hub' or 'd<i>'), under each hierarchy's root."""
        return f"{self.prefix}/{part}"
