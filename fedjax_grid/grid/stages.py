"""Start-up stages of a run, timed and reported as they begin and end.

A run spends its first tens of seconds before any round finishes: loading and
partitioning the data, building the model, starting or connecting the workers,
and compiling the model on them during the first round. ``Stages`` times each
of these and calls ``callback(event)`` when a stage begins and when it ends, so
the CLI and the run panel can show them before the progress bar moves.

An event is a dict: ``stage`` (a short key: ``data``, ``model``, ``grid``,
``first_round``), ``text`` (what is being done, for people), ``status``
(``'start'`` or ``'done'``), ``seconds`` (duration in seconds, ``None`` at the
start) and ``detail`` (what was found, e.g. ``'2 workers'``; '' when nothing).
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Optional


class Stages:
    """Time named stages; ``log`` keeps the finished ones as (stage, text, seconds, detail)."""

    def __init__(self, callback: Optional[Callable[[dict], None]] = None):
        self.callback = callback
        self.log: list[tuple[str, str, float, str]] = []

    def _emit(self, **event) -> None:
        if self.callback is not None:
            self.callback(event)

    @contextlib.contextmanager
    def stage(self, stage: str, text: str):
        """``with stages.stage('data', 'loading data') as done: ... done['detail'] = '...'``."""
        self._emit(stage=stage, text=text, status="start", seconds=None, detail="")
        t0 = time.perf_counter()
        info = {"detail": ""}
        yield info
        seconds = time.perf_counter() - t0
        self.log.append((stage, text, seconds, info["detail"]))
        self._emit(stage=stage, text=text, status="done", seconds=seconds, detail=info["detail"])

    def summary(self) -> str:
        """'data 1.2 s · model 0.8 s · grid 5.1 s (2 workers)' of the finished stages."""
        parts = []
        for stage, _, seconds, detail in self.log:
            parts.append(f"{stage} {seconds:.1f} s" + (f" ({detail})" if detail else ""))
        return " · ".join(parts)


def format_event(event: dict) -> str:
    """One event as text: 'loading data ...' at the start, ' 1.2 s (detail)' at the end."""
    if event["status"] == "start":
        return f"{event['text']} ..."
    detail = f" ({event['detail']})" if event.get("detail") else ""
    return f" {event['seconds']:.1f} s{detail}"
