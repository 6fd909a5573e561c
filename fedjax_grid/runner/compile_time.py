"""Compilation charged to the rounds in which it was spent (asynchronous rounds).

A client task reports the spans (start, end; seconds since the epoch, its worker's
clock) during which it compiled (``compile_spans``, from ``training.compile_meter``).
In asynchronous rounds a task may compile during version v and arrive in version v+3;
its compilation is charged to the versions whose intervals -- from the previous server
update to this one -- it overlapped, not to the one it arrived in. Compilations that
ran at the same time on several workers count once (the union of the spans): a
version's ``compile_s`` is the time within it during which some worker compiled (plus
the coordinator's own compilation in it), never more than the version's wall time.
"""
from __future__ import annotations

from typing import Iterable


def merged(spans: Iterable) -> list[tuple[float, float]]:
    """``spans`` ((start, end) pairs, any order, end >= start) as disjoint sorted spans."""
    out: list[list[float]] = []
    for s, e in sorted((float(s), float(e)) for s, e in spans if e > s):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def within(spans: Iterable, start: float, end: float) -> float:
    """Seconds of the union of ``spans`` inside the interval [``start``, ``end``]."""
    return sum(max(0.0, min(e, end) - max(s, start)) for s, e in merged(spans))


class CompileCharge:
    """The task compile spans seen so far and the versions' intervals: what each version
    is charged (``charge``) and which earlier rows change when late spans arrive
    (``recharged``)."""

    def __init__(self):
        self.spans: list[tuple[float, float]] = []
        #: version -> (start, end, the coordinator's own compilation in it, s)
        self.windows: dict[int, tuple[float, float, float]] = {}

    def add(self, spans) -> None:
        """Spans reported by an arrived task (``[(start, end), ...]`` or None)."""
        if spans:
            self.spans = merged(list(self.spans) + [tuple(s) for s in spans])

    def charge(self, start: float, end: float, own: float) -> float:
        """``compile_s`` of a version over [start, end] with ``own`` coordinator seconds."""
        return min(max(0.0, end - start), own + within(self.spans, start, end))

    def close(self, version: int, start: float, end: float, own: float) -> None:
        self.windows[int(version)] = (float(start), float(end), float(own))

    def prune(self, before: float) -> None:
        """Forget the intervals that ended before ``before`` (no task that may still
        arrive started before then: their charge is final)."""
        self.windows = {v: w for v, w in self.windows.items() if w[1] >= before}

    def recharged(self, rows: dict) -> dict:
        """``{version: (compile_s, round_time_s)}`` of the closed versions whose charge
        changed with the spans added since; ``rows``: version -> its current compile_s."""
        out = {}
        for v, (start, end, own) in self.windows.items():
            now = self.charge(start, end, own)
            old = rows.get(v)
            if old is not None and abs(now - float(old)) > 1e-6:
                out[v] = (now, max(0.0, end - start - now))
        return out
