"""Asynchronous buffered aggregation (FedBuff, Nguyen et al., AISTATS 2022), pure.

The server holds global version ``V`` (= ``ServerState.round``: server updates applied).
Each desktop trains on whatever version it was handed and returns its params delta
against that version. Arrivals are folded one at a time into a buffer; every
``buffer_size`` (M) accepted deltas the buffer is flushed -- the server optimiser is
applied to the buffer's mean delta -- and the version advances by one::

    fold = AsyncFold(algorithm, state, buffer_size=4, staleness={'name': 'polynomial', 'a': 0.5},
                     max_staleness=20)
    verdict = fold.arrive(Arrival(client=3, base_version=7, delta=d, num_examples=120))
    fold.state        # the newest global state (its .round is the version)

A delta of staleness ``s = V - base_version`` enters the buffer multiplied by the
registered staleness weight (:mod:`.staleness`) with weight ``num_examples`` in the
mean, so the flushed step is ``sum_i n_i w(s_i) delta_i / sum_i n_i``: stale deltas
shrink in absolute size (as in FedBuff's ``1/M sum w(s) delta``) and, among equally
fresh ones, larger local sets count more (as in FedAvg). A delta with
``s > max_staleness`` is dropped (recorded, never folded); validation and the norm
guard are the synchronous ones (:class:`~.algorithm.RoundFold`).

Determinism: the state after any prefix of arrivals is a pure function of the
initial state and that ordered prefix (:func:`replay`); the grid engine records
every arrival in order, so re-folding the recorded arrivals reproduces its final
parameters bitwise. ``on_flush(state) -> state`` lets the caller adjust each new
version before it is handed out (the engine re-estimates BatchNorm statistics there
in ``bn_mode='recalibrate'``); replay must pass the same hook.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple, Optional

from fedjax_grid.federated.staleness import staleness_weight

PyTree = Any


class Arrival(NamedTuple):
    """One finished client task, as the server receives it."""
    client: Any                       # client id
    base_version: int                 # global version the client trained from
    delta: PyTree                     # params delta against that version
    num_examples: float
    batch_stats: Optional[PyTree] = None
    bn_moments: Optional[tuple] = None
    upload: Optional[PyTree] = None   # the client algorithm's upload (e.g. SCAFFOLD's dc_i)


class Verdict(NamedTuple):
    status: str                       # 'ok' (folded), 'dropped' (too stale), 'rejected'
    staleness: int
    weight: float                     # staleness weight applied (0 when not folded)
    reason: str = ""
    flushed: bool = False             # this arrival completed the buffer: a new version


class AsyncFold:
    """FedBuff's server: arrivals in, a new global version every M accepted deltas."""

    def __init__(self, algorithm, state, *, buffer_size: int, staleness: dict,
                 max_staleness: int, on_flush: Optional[Callable] = None):
        if buffer_size < 1:
            raise ValueError(f"buffer_size={buffer_size} must be >= 1")
        self.algorithm, self.state = algorithm, state
        self.buffer_size, self.staleness, self.max_staleness = buffer_size, staleness, max_staleness
        self.on_flush = on_flush
        self.last_flush: dict = {}     # diagnostics of the latest flush
        self._buffer = algorithm.begin(state)

    @property
    def version(self) -> int:
        return int(self.state.round)

    @property
    def buffered(self) -> int:
        """Deltas accepted into the buffer since the last flush (< buffer_size)."""
        return len(self._buffer.accepted)

    def arrive(self, a: Arrival) -> Verdict:
        """Fold one arrival; flush when the buffer is full."""
        s = self.version - int(a.base_version)
        if s < 0:
            return Verdict("rejected", s, 0.0, f"base version {a.base_version} is newer than "
                           f"the server's {self.version}")
        if s > self.max_staleness:
            return Verdict("dropped", s, 0.0, f"staleness {s} > max_staleness {self.max_staleness}")
        w = staleness_weight(self.staleness, s)
        reason = self._buffer.add_delta(a.delta, a.num_examples, a.client,
                                        batch_stats=a.batch_stats, bn_moments=a.bn_moments,
                                        scale=w, upload=a.upload)
        if reason is not None:
            return Verdict("rejected", s, 0.0, reason)
        if self.buffered < self.buffer_size:
            return Verdict("ok", s, w)
        self.flush()
        return Verdict("ok", s, w, flushed=True)

    def flush(self) -> dict:
        """Apply the server optimiser to the buffer now (also when not full)."""
        state, diag = self._buffer.finish()
        if self.on_flush is not None and diag["applied"]:
            state = self.on_flush(state)
        self.state = state
        self.last_flush = diag
        self._buffer = self.algorithm.begin(state)
        return diag


def replay(algorithm, state, arrivals: Iterable[Arrival], **policy) -> AsyncFold:
    """Re-fold an ordered arrival log from ``state``; the returned fold's ``state`` is
    bitwise the state the live server reached after the same arrivals."""
    fold = AsyncFold(algorithm, state, **policy)
    for a in arrivals:
        fold.arrive(a)
    return fold
