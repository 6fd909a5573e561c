"""Link speed in the heterogeneity model: each simulated desktop's up/down bandwidth and latency.

Pure and seeded like :mod:`fedjax_grid.hazards.faults`: ``link_of(preset, seed, client)``
depends on (preset, seed, client) only, so a run and its resume give every client
(the simulated desktop a logical client stands for) the same link for the whole
run. A preset is registered in :data:`LINKS` with its parameters; the config stores
it as ``'wifi'`` or ``{name: wifi, up_mbit: 20}``.

==========  =============  ===============  ===============  ============
preset      up (Mbit/s)    down (Mbit/s)    latency (ms)     spread
==========  =============  ===============  ===============  ============
``none``    infinite       infinite         0                --
``lan``     1000           1000             0.5              1 (none)
``wifi``    50             200              10 -- 30         2
``home``    10             50               20 -- 60         4
==========  =============  ===============  ===============  ============

Per client: one link-quality factor ``f``, log-uniform in ``[1/spread, spread]``
(``spread=2``: half to twice the nominal rate), scales *both* directions (a
desktop on a poor link is poor both ways); the latency is log-uniform in
``[latency_ms_min, latency_ms_max]`` (uniform when the range starts at 0), drawn
independently. ``spread=1`` and
``latency_ms_min == latency_ms_max`` give every client the nominal link.

A transfer of ``n`` bytes takes ``latency + 8 n / bandwidth`` seconds
(:func:`transfer_seconds`; zero bytes take no time, an infinite bandwidth only
the latency). With ``faults.link`` set, each task sleeps (interruptibly, on the
worker) ``download_seconds`` of the model it received (the broadcast payload's bytes;
shipped examples are not counted: a desktop would hold its own data) before training
and ``upload_seconds`` of its encoded update plus BatchNorm statistics (its
``bytes_out``) after, so its wall time includes both; the seconds are recorded in the
task's ``transfer_s`` column.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import pydantic
from pydantic import Field, model_validator

from fedjax_grid import streams
from fedjax_grid.registry import NoParams, Params, Registry

#: Link presets: ``LINKS.build(spec, seed=..., client=...)`` -> :class:`LinkModel`.
LINKS = Registry("link preset")

MBIT = 1e6


@dataclasses.dataclass(frozen=True)
class LinkModel:
    """One desktop's link: bandwidths in bit/s (``math.inf``: no transfer time), latency in s.

    Unpacks as ``up_bps, down_bps, latency_s = link``.
    """
    up_bps: float = math.inf
    down_bps: float = math.inf
    latency_s: float = 0.0

    def __iter__(self):
        return iter((self.up_bps, self.down_bps, self.latency_s))

    def upload_seconds(self, nbytes: int) -> float:
        """Time to send ``nbytes`` from the desktop to the coordinator."""
        return transfer_seconds(nbytes, self.up_bps, self.latency_s)

    def download_seconds(self, nbytes: int) -> float:
        """Time to send ``nbytes`` from the coordinator to the desktop."""
        return transfer_seconds(nbytes, self.down_bps, self.latency_s)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


NO_LINK = LinkModel()


def transfer_seconds(nbytes: int, bandwidth_bps: float, latency_s: float = 0.0) -> float:
    """``latency_s + 8 * nbytes / bandwidth_bps`` seconds; 0.0 for ``nbytes <= 0``."""
    if nbytes <= 0:
        return 0.0
    if bandwidth_bps <= 0:
        raise ValueError(f"bandwidth_bps={bandwidth_bps!r} must be > 0")
    return float(latency_s) + (0.0 if math.isinf(bandwidth_bps) else 8.0 * nbytes / bandwidth_bps)


#: bounds of a link preset's parameters
#: (a link slower than MIN_MBIT after the spread would sleep a model's transfer for hours)
MIN_MBIT, MAX_MBIT, MAX_LATENCY_MS, MAX_SPREAD = 0.01, 1e6, 60_000.0, 100.0
_BOUNDS = {"up_mbit": {"ge": MIN_MBIT, "le": MAX_MBIT}, "down_mbit": {"ge": MIN_MBIT, "le": MAX_MBIT},
           "latency_ms_min": {"ge": 0, "le": MAX_LATENCY_MS},
           "latency_ms_max": {"ge": 0, "le": MAX_LATENCY_MS}, "spread": {"ge": 1, "le": MAX_SPREAD}}


class LinkParams(Params):
    """A preset's nominal link and the per-client spread around it."""
    up_mbit: float = Field(description="nominal upload bandwidth, Mbit/s", **_BOUNDS["up_mbit"])
    down_mbit: float = Field(description="nominal download bandwidth, Mbit/s", **_BOUNDS["down_mbit"])
    latency_ms_min: float = Field(description="smallest one-way latency, ms",
                                  **_BOUNDS["latency_ms_min"])
    latency_ms_max: float = Field(description="largest one-way latency, ms",
                                  **_BOUNDS["latency_ms_max"])
    spread: float = Field(description="bandwidth factor log-uniform in [1/spread, spread]",
                          **_BOUNDS["spread"])

    @model_validator(mode="after")
    def _latency_order(self):
        if self.latency_ms_max < self.latency_ms_min:
            raise ValueError(f"latency_ms_max={self.latency_ms_max} must be >= "
                             f"latency_ms_min={self.latency_ms_min}")
        slowest = min(self.up_mbit, self.down_mbit) / self.spread
        if slowest < MIN_MBIT:
            raise ValueError(f"the slowest desktop's link, min(up_mbit, down_mbit) / spread = "
                             f"{slowest:.3g} Mbit/s, is below {MIN_MBIT} Mbit/s")
        return self


def _preset_params(name: str, **defaults: float) -> type[LinkParams]:
    """A preset's Params: LinkParams with ``defaults`` (same bounds and descriptions)."""
    fields = {k: (float, Field(v, description=LinkParams.model_fields[k].description,
                               **_BOUNDS[k])) for k, v in defaults.items()}
    return pydantic.create_model(f"{name.capitalize()}Params", __base__=LinkParams, **fields)


LanParams = _preset_params("lan", up_mbit=1000.0, down_mbit=1000.0, latency_ms_min=0.5,
                           latency_ms_max=0.5, spread=1.0)
WifiParams = _preset_params("wifi", up_mbit=50.0, down_mbit=200.0, latency_ms_min=10.0,
                            latency_ms_max=30.0, spread=2.0)
HomeParams = _preset_params("home", up_mbit=10.0, down_mbit=50.0, latency_ms_min=20.0,
                            latency_ms_max=60.0, spread=4.0)


def draw_link(params: LinkParams, seed: int, client: int) -> LinkModel:
    """The link of ``client``: nominal rates times its factor, and its latency (see module doc)."""
    u_rate, u_lat = streams.rng(seed, streams.LINK, client).random(2)
    factor = math.exp((2.0 * u_rate - 1.0) * math.log(params.spread))
    lo, hi = params.latency_ms_min, params.latency_ms_max
    if lo == hi or lo <= 0:
        latency_ms = lo + u_lat * (hi - lo)        # uniform when the range starts at 0
    else:
        latency_ms = math.exp(math.log(lo) + u_lat * (math.log(hi) - math.log(lo)))
    return LinkModel(up_bps=params.up_mbit * MBIT * factor,
                     down_bps=params.down_mbit * MBIT * factor,
                     latency_s=float(latency_ms) / 1e3)


@LINKS.register("none", NoParams)
def no_link(params: NoParams, seed: int = 0, client: int = 0) -> LinkModel:
    """Infinite bandwidth, no latency: transfers take no time (today's behaviour)."""
    return NO_LINK


@LINKS.register("lan", LanParams)
def lan(params: LanParams, seed: int = 0, client: int = 0) -> LinkModel:
    """Wired office LAN: 1 Gbit/s both ways, 0.5 ms, the same for every desktop."""
    return draw_link(params, seed, client)


@LINKS.register("wifi", WifiParams)
def wifi(params: WifiParams, seed: int = 0, client: int = 0) -> LinkModel:
    """Office Wi-Fi: 50 Mbit/s up, 200 down, 10-30 ms; rates x [1/2, 2] per desktop."""
    return draw_link(params, seed, client)


@LINKS.register("home", HomeParams)
def home(params: HomeParams, seed: int = 0, client: int = 0) -> LinkModel:
    """Home broadband: 10 Mbit/s up, 50 down, 20-60 ms; rates x [1/4, 4] per desktop."""
    return draw_link(params, seed, client)


def link_of(preset: Any, seed: int, client: int, path: str = "links") -> LinkModel:
    """The link of simulated desktop ``client``: ``preset`` is a name, ``'wifi(up_mbit=20)'``
    or ``{'name': 'wifi', ...}``. Unpacks as ``(up_bps, down_bps, latency_s)``.

    Bad presets or parameters raise a one-line UserError with ``path``.
    """
    return LINKS.build(LINKS.validate(preset, path), seed=seed, client=client)
