"""The arrival log of an asynchronous run: every update the server received, in order.

An asynchronous run's final parameters are a pure function of the ordered arrivals
(:func:`fedjax_grid.federated.fedbuff.replay`), but which update arrives when depends on
the desktops' timing: two runs with the same seed differ. The log makes a run
reproducible after the fact: ``<run>/arrivals/NNNNNN.msgpack`` holds arrival number N
(0-based, the order the server folded them): the client, the version it trained from,
its example count, and its delta, BatchNorm statistics, moments and client-algorithm
upload, as Flax msgpack (arrays bit for bit, no pickle). Each file is written atomically
before the arrival is folded; the checkpoint records how many arrivals its state holds
(``meta['async']['arrivals']``), and a resumed run removes the arrivals past it (folded
into a buffer the stopped coordinator never flushed). ``fedjax-grid replay RUN`` re-folds
the log from the initial state and compares with the last checkpoint, bit for bit.

Size: one model-sized delta per arrival (plus its BatchNorm statistics).
"""
from __future__ import annotations

import pathlib
from typing import Iterator

import numpy as np
from flax import serialization

from fedjax_grid.atomic_write import write_atomic
from fedjax_grid.federated.fedbuff import Arrival

FOLDER = "arrivals"


def _untuple(tree):
    """msgpack's dicts back to tuples where Flax wrote a tuple (keys '0' .. 'n-1')."""
    if isinstance(tree, dict):
        out = {k: _untuple(v) for k, v in tree.items()}
        if out and sorted(out) == [str(i) for i in range(len(out))]:
            return tuple(out[str(i)] for i in range(len(out)))
        return out
    return tree


class ArrivalLog:
    """Arrivals of one run, one file each, numbered from 0 in the order they were folded."""

    def __init__(self, run_dir, start: int = 0):
        self.dir = pathlib.Path(run_dir) / FOLDER
        self.count = int(start)

    def path(self, i: int) -> pathlib.Path:
        return self.dir / f"{i:06d}.msgpack"

    def truncate(self) -> int:
        """Remove the arrivals numbered ``count`` and later (not in the checkpoint's state);
        how many were removed."""
        extra = [p for p in self.dir.glob("*.msgpack") if int(p.stem) >= self.count] \
            if self.dir.is_dir() else []
        for p in extra:
            p.unlink()
        return len(extra)

    def write(self, a: Arrival) -> None:
        """Append ``a`` (atomically: a reader never sees half an arrival)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        record = {"client": int(a.client), "base_version": int(a.base_version),
                  "num_examples": a.num_examples, "delta": a.delta,
                  "batch_stats": a.batch_stats, "bn_moments": a.bn_moments, "upload": a.upload}
        write_atomic(self.path(self.count), serialization.msgpack_serialize(
            serialization.to_state_dict(record)))
        self.count += 1

    def read(self, n: int) -> Iterator[Arrival]:
        """The first ``n`` arrivals, in order (``FileNotFoundError`` naming a missing one)."""
        for i in range(n):
            r = _untuple(serialization.msgpack_restore(self.path(i).read_bytes()))
            bn = r.get("bn_moments")
            if isinstance(bn, tuple) and len(bn) == 2 and np.ndim(bn[1]) == 0:
                bn = (bn[0], bn[1].item() if hasattr(bn[1], "item") else bn[1])
            yield Arrival(r["client"], r["base_version"], r["delta"], r["num_examples"],
                          r.get("batch_stats"), bn, r.get("upload"))
