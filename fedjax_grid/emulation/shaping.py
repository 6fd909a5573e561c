"""Per-desktop link rates: a token bucket filter (``tbf``) on each end of its veth.

The desktop's end shapes what it sends (its uplink); the hub's end shapes what
the desktop receives (its downlink). Each is a root ``tbf`` qdisc set through
pyroute2's tc API.

* rate: bits per second of the link (Ethernet frames, so TCP payload runs ~5 %
  below it);
* burst: ``max(4 KiB, 4 ms of the rate)`` bytes may pass at line speed;
* queue: 100 ms of the rate, at least 128 KiB (two full-size GSO packets; at
  1 Mbit/s that is ~1 s of queueing, as in a home router's buffer), then packets
  are dropped and TCP backs off.

Delay (latency, jitter) and random loss are not emulated: they need the
``netem`` qdisc, which this machine's kernel lacks (``sch_netem``); a link's
delay here is its serialisation and queueing time only.
"""
from __future__ import annotations

from pyroute2 import IPRoute

from fedjax_grid.emulation.network import outside_event_loop

#: Largest rate a tbf qdisc takes (its rate field is 32-bit bytes/s): ~34 Gbit/s.
MAX_RATE_BPS = (2 ** 32 - 1) * 8
QUEUE_MS = 100
MIN_QUEUE_BYTES = 2 * 65536
MIN_BURST_BYTES = 4096


def burst_bytes(rate_bps: float) -> int:
    """Token bucket depth for ``rate_bps``: 4 ms of the rate, at least 4 KiB."""
    return int(max(MIN_BURST_BYTES, rate_bps / 8 * 0.004))


def queue_bytes(rate_bps: float) -> int:
    """Queue beyond the bucket: 100 ms of the rate, at least two 64 KiB TSO/GSO packets
    (tbf cuts a large packet into frames that must all fit, else TCP loses a burst
    of them at once and stalls on a retransmission timeout)."""
    return int(max(rate_bps / 8 * QUEUE_MS / 1000, MIN_QUEUE_BYTES) + burst_bytes(rate_bps))


@outside_event_loop
def shape(ns: str, ifname: str, rate_bps: float) -> None:
    """Limit what ``ifname`` (in namespace ``ns``) sends to ``rate_bps`` bits/s."""
    if not 0 < rate_bps <= MAX_RATE_BPS:
        raise ValueError(f"rate {rate_bps} bit/s out of (0, {MAX_RATE_BPS}]")
    with IPRoute(netns=ns, flags=0) as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        ipr.tc("replace", "tbf", index=idx, handle="1:", rate=f"{int(rate_bps)}bit",
               burst=burst_bytes(rate_bps), limit=queue_bytes(rate_bps))


@outside_event_loop
def shaped_rate(ns: str, ifname: str) -> float | None:
    """The tbf rate on ``ifname`` in bits/s (None: not shaped)."""
    with IPRoute(netns=ns, flags=0) as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        for q in ipr.get_qdiscs(index=idx):
            if q.get_attr("TCA_KIND") == "tbf":
                parms = q.get_nested("TCA_OPTIONS", "TCA_TBF_PARMS")
                return float(parms["rate"] * 8) if parms else None
    return None


@outside_event_loop
def sent_bytes(ns: str, ifname: str) -> int:
    """Bytes the tbf on ``ifname`` has passed since it was set (its qdisc counters)."""
    with IPRoute(netns=ns, flags=0) as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        for q in ipr.get_qdiscs(index=idx):
            if q.get_attr("TCA_KIND") == "tbf":
                stats = q.get_attr("TCA_STATS2")
                basic = stats.get_attr("TCA_STATS_BASIC") if stats is not None else None
                return int((basic or q.get_attr("TCA_STATS") or {"bytes": 0})["bytes"])
    return 0
