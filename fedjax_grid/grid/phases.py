"""Where a round's wall time goes, on the coordinator: a lap clock per round.

``PhaseClock`` accumulates ``time.perf_counter`` seconds per named phase; the engine
laps it at each phase boundary of a synchronous round:

- ``forming``   local sets of this round and client sampling;
- ``broadcast`` the global weights sent to the workers (``RoundDispatch.broadcast_s``);
- ``submit``    task specs built, examples gathered (``shipped`` mode) and submitted;
- ``wait``      waiting for results: the workers' training, transfers both ways,
                queueing on busy workers (the critical path outside the coordinator);
- ``fold``      validating and folding arrived deltas (inside the wait, subtracted from it);
- ``server``    the server optimiser step;
- ``launch``    the next round launched ahead (``grid.overlap_rounds``: its forming,
                broadcast and submission, done here so that its tasks run during this
                round's ``bn``, ``eval`` and ``records``; that round's own ``wait``
                starts at its launch, so the phases of consecutive rounds overlap);
- ``bn``        BatchNorm re-estimation (``bn_mode`` recalibrate / local);
- ``eval``      the global model's evaluation on the test split;
- ``records``   task/round records and the atomic checkpoint.

The rows go to ``profile.csv`` beside the records (diagnostic: not checkpointed, a
resumed run profiles from its resume on). The workers' side is in ``tasks.csv``
(``duration_s`` per task, and ``train_s`` here: the mean of the tasks' training).
"""
from __future__ import annotations

import time

PHASES = ("forming", "broadcast", "submit", "wait", "fold", "server", "launch", "bn", "eval",
          "records")


class PhaseClock:
    """Seconds per phase of one round; ``lap(phase)`` charges the time since the last lap."""

    def __init__(self):
        self.seconds = {p: 0.0 for p in PHASES}
        self._t = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + (now - self._t)
        self._t = now

    def move(self, seconds: float, from_phase: str, to_phase: str) -> None:
        """Re-charge ``seconds`` measured inside ``from_phase`` to ``to_phase``."""
        self.seconds[from_phase] -= seconds
        self.seconds[to_phase] = self.seconds.get(to_phase, 0.0) + seconds
