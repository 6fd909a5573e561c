"""Grid parameters from what the grid shows: ``grid.deadline_s``, ``grid.quorum`` and
``grid.overcommit`` set to ``auto`` (in the spirit of BOINC's per-host turnaround and
reliability statistics).

Before each synchronous round the settings set to ``auto`` are chosen from

- the **turnaround history**: for each past round (the first, where the workers compile,
  is left out once others exist), the seconds from the round's start to the arrival of
  each accepted update, in arrival order (:class:`GridTuner`, the last ``WINDOW`` rounds);
- the **reliability** of the healthy desktops, from the records' tasks (per desktop, as
  BOINC keeps per host: returned in time, or failed / late -- a spare cancelled because
  the quota was met does not count), pooled with a prior of 2 tasks returned:
  ``rho = (returned + 2) / (returned + missed + 2)``;
- the **task time per desktop** (median ``duration_s`` of its accepted tasks).

The rules (:func:`auto_settings`, pure):

- overcommit = ``ceil(n / rho) - n`` spares for the tasks expected to be lost, plus one
  per healthy desktop whose median task time is over ``SLOW_FACTOR`` x the median of the
  desktops' medians (a straggler: its task would hold the barrier), at most
  ``num_clients - n``. The straggler spares go only to task slots the round's n tasks leave
  idle (``slots - n``, slots = the healthy desktops' Dask threads): a spare queued behind a
  running task cannot overtake a straggler, and on one machine it only takes CPU from the
  next round. The reliability spares are not capped so: they replace tasks that are lost
  (a laptop that goes away mid-round), queued or not;
- deadline = ``DEADLINE_FACTOR`` x the ``DEADLINE_QUANTILE`` quantile, over the window, of
  the arrival of the round's n-th accepted update (the last one when fewer arrived), at
  least ``MIN_DEADLINE_S``; no deadline while there is no history (the first round);
- quorum = ``rho / 2``, at least one update (``1 / n``).

n is ``training.clients_per_round``. The history is checkpointed with the run (meta
``tuning``) and the tasks with its records, so a resumed run keeps both; each round's
chosen values are in ``tuning.csv`` beside the records. Asynchronous rounds use
``deadline_s='auto'`` per task: ``DEADLINE_FACTOR`` x the quantile of the accepted tasks'
turnaround (submission to arrival); quorum and overcommit do not apply to them.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Optional

import numpy as np

#: Rounds of history the settings are chosen from.
WINDOW = 5
#: The deadline is this many times the quantile below of the n-th arrival.
DEADLINE_FACTOR = 1.5
DEADLINE_QUANTILE = 0.9
#: Shortest automatic deadline (s).
MIN_DEADLINE_S = 5.0
#: A desktop whose median task time exceeds this many times the median of all desktops'
#: medians is a straggler and gets a spare.
SLOW_FACTOR = 2.0


@dataclasses.dataclass(frozen=True)
class Settings:
    """One round's grid settings: deadline_s (None: none), quorum (fraction), overcommit."""
    deadline_s: Optional[float]
    quorum: float
    overcommit: int
    reliability: float = float("nan")
    auto: tuple = ()  # names of the settings chosen automatically


def reliability(tasks, healthy: Iterable[str]) -> float:
    """Pooled fraction of tasks returned in time by the ``healthy`` desktops (all desktops
    when none of them has a task yet), prior 2 returned: ``tasks`` is the records' tasks
    table. Returned: ok or rejected (it computed); missed: failed, or late for any reason
    but ``NotNeeded`` (a spare cancelled because the quota was met is no fault of its
    desktop -- counting it made overcommit feed on itself)."""
    healthy = set(healthy)
    mine = tasks[tasks["worker"].isin(healthy)]
    t = mine if len(mine) else tasks
    ok = int(t["status"].isin(["ok", "rejected"]).sum())
    spare = t["reason"].fillna("").astype(str).str.startswith("NotNeeded")
    bad = int(((t["status"] == "failed") | ((t["status"] == "late") & ~spare)).sum())
    return (ok + 2.0) / (ok + bad + 2.0)


def stragglers(task_times: dict) -> int:
    """How many desktops' median task time exceeds ``SLOW_FACTOR`` x the median of all
    desktops' medians (``task_times``: address -> list of seconds)."""
    medians = [float(np.median(v)) for v in task_times.values() if len(v)]
    if len(medians) < 2:
        return 0
    typical = float(np.median(medians))
    return sum(m > SLOW_FACTOR * typical for m in medians)


def auto_settings(history: list, *, n: int, num_clients: int, rho: float, slow: int,
                  fixed: Settings, slots: Optional[int] = None) -> Settings:
    """The round's settings: ``fixed`` with those it names in ``fixed.auto`` chosen by the
    rules of the module. history: per past round, the sorted arrival times (s) of its
    accepted updates; rho: reliability; slow: stragglers among the healthy desktops;
    slots: the healthy desktops' task slots (None: not capped by them)."""
    deadline, quorum, overcommit = fixed.deadline_s, fixed.quorum, fixed.overcommit
    if "overcommit" in fixed.auto:
        if slots is not None:
            slow = min(slow, max(0, int(slots) - n))
        overcommit = min(max(0, num_clients - n), math.ceil(n / max(rho, 0.05)) - n + slow)
    if "deadline_s" in fixed.auto:
        nth = [a[min(n, len(a)) - 1] for a in history if len(a)]
        deadline = (max(MIN_DEADLINE_S, DEADLINE_FACTOR * float(np.quantile(nth, DEADLINE_QUANTILE)))
                    if nth else None)
    if "quorum" in fixed.auto:
        quorum = max(1.0 / max(n, 1), min(1.0, rho / 2.0))
    return Settings(deadline, float(quorum), int(overcommit), float(rho), fixed.auto)


class GridTuner:
    """The turnaround history of a run (see the module); ``state()`` / ``from_state`` for
    the checkpoint; ``rows`` the chosen settings per round (``tuning.csv``)."""

    def __init__(self, state: Optional[dict] = None):
        state = state or {}
        self.rounds: list[list[float]] = [list(map(float, a)) for a in state.get("rounds", [])]
        self.first_round: Optional[list] = state.get("first_round")
        self.task_turnaround: list[float] = list(map(float, state.get("task_turnaround", [])))
        self.rows: list[dict] = list(state.get("rows", []))

    def state(self) -> dict:
        return {"rounds": self.rounds, "first_round": self.first_round,
                "task_turnaround": self.task_turnaround, "rows": self.rows}

    def observe_round(self, arrivals: Iterable[float]) -> None:
        """The arrival times (s from the round's start) of one round's accepted updates."""
        a = sorted(float(x) for x in arrivals)
        if self.first_round is None:
            self.first_round = a  # the compiling round: used only while nothing else is known
            return
        self.rounds = (self.rounds + [a])[-WINDOW:]

    def observe_task(self, seconds: float) -> None:
        """One accepted asynchronous task's turnaround (submission to arrival, s)."""
        self.task_turnaround = (self.task_turnaround + [float(seconds)])[-WINDOW * 8:]

    def history(self) -> list:
        return self.rounds if self.rounds else ([self.first_round] if self.first_round else [])

    def task_deadline(self) -> Optional[float]:
        """Asynchronous rounds: the per-task limit (None until 3 tasks were accepted)."""
        if len(self.task_turnaround) < 3:
            return None
        q = float(np.quantile(self.task_turnaround, DEADLINE_QUANTILE))
        return max(MIN_DEADLINE_S, DEADLINE_FACTOR * q)

    def note(self, round_: int, s: Settings) -> None:
        self.rows.append({"round": int(round_), "deadline_s": s.deadline_s, "quorum": s.quorum,
                          "overcommit": s.overcommit, "reliability": s.reliability,
                          "auto": ",".join(s.auto)})
