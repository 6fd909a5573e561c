"""The availability schedule of an emulated grid: seeded, deterministic, pure.

``draw(schedule, names)`` turns a profile's hazards into events: for each
desktop (by its index) and each hazard kind, starts are a Poisson process of
mean gap ``every_s`` from ``start_after_s`` up to ``horizon_s`` (its own
random stream: seed, desktop index, kind), each lasting a uniform draw from
``duration_s``; on one desktop an event that starts while an earlier one lasts is
dropped, so a desktop is never frozen and killed at once. ``timeline(events)``
lists the actions that replay them: ``link_down``/``link_up``,
``freeze``/``thaw``, ``kill``/``rejoin``, at seconds after the grid came up.
"""
from __future__ import annotations

import dataclasses

from fedjax_grid import streams

#: Hazard kind -> (its number in the random stream's key, the action that ends it).
KINDS = {"link_down": (0, "link_up"), "freeze": (1, "thaw"), "kill": (2, "rejoin")}


@dataclasses.dataclass(frozen=True)
class Event:
    """A hazard on one desktop: starts ``t`` s after the grid is up, lasts ``duration_s`` s."""
    t: float
    desktop: str
    kind: str
    duration_s: float


def _starts(hazard, seed: int, index: int, kind: str, start: float, horizon: float):
    rng = streams.rng(seed, streams.GRID_SCHEDULE, index, KINDS[kind][0])
    lo, hi = hazard.duration_s
    t = start + rng.exponential(hazard.every_s)
    while t < horizon:
        yield float(t), float(rng.uniform(lo, hi))
        t += rng.exponential(hazard.every_s)


def draw(schedule, names: list[str], seed: int | None = None) -> list[Event]:
    """The events of ``schedule`` (a ``profiles.Schedule``) for desktops ``names``,
    sorted by time; ``seed`` overrides the schedule's seed."""
    seed = schedule.seed if seed is None else seed
    events = []
    for i, name in enumerate(names):
        candidates = []
        for kind in KINDS:
            hazard = getattr(schedule, kind)
            if hazard is not None:
                candidates += [(t, kind, d) for t, d in _starts(
                    hazard, seed, i, kind, schedule.start_after_s, schedule.horizon_s)]
        busy_until = float("-inf")
        for t, kind, d in sorted(candidates):
            if t >= busy_until:
                events.append(Event(round(t, 3), name, kind, round(d, 3)))
                busy_until = t + d
    return sorted(events, key=lambda e: (e.t, e.desktop))


def timeline(events: list[Event]) -> list[tuple[float, str, str, Event]]:
    """(seconds after up, desktop, action, the event) for every start and end, in order."""
    out = []
    for e in events:
        out.append((e.t, e.desktop, e.kind, e))
        out.append((round(e.t + e.duration_s, 3), e.desktop, KINDS[e.kind][1], e))
    return sorted(out, key=lambda a: (a[0], a[1], a[2]))
