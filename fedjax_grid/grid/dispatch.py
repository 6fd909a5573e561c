"""One round's client tasks on the Dask grid: broadcast, submit, wait, cancel.

``RoundDispatch`` holds the futures of one round and the bytes that crossed the
network for it; the engine decides what each finished task means::

    d = RoundDispatch(client, gvars, run_id=..., round_=r, n_workers=...)
    d.submit(k, attempt, spec, shipped)
    for fut, k, attempt in d.completed(deadline, stop=lambda: quota_met()):
        ...  # fut.status == 'finished' -> fut.result(); else failed (maybe d.submit again)
    late = d.cancel_pending()   # stragglers: [(fut, k, attempt, submitted_at), ...]
    d.release()

All waiting happens in slices of at most ``WAIT_SLICE_S`` seconds so that a lost
scheduler is noticed (``GridLostError``) even when the round has no deadline.
"""
from __future__ import annotations

import time
from typing import Callable, Iterator, Optional

import dask
import jax
import numpy as np
from distributed import TimeoutError as DaskTimeoutError
from distributed import wait as dask_wait
from distributed.client import FuturesCancelledError

from fedjax_grid.grid.tasks import client_update

#: Longest single wait for task results (s) before the engine checks its scheduler link.
WAIT_SLICE_S = 2.0


class GridLostError(ConnectionError):
    """The coordinator lost its Dask scheduler mid-round.

    An ``OSError`` (the CLI turns it into one line ``error: lost the Dask cluster ...``);
    the round in progress is dropped and the last checkpoint stays resumable.
    """


def check_connected(client, round_: int) -> None:
    """Raise ``GridLostError`` unless ``client`` is still connected to its scheduler."""
    status = getattr(client, "status", "running")
    if status != "running":
        raise GridLostError(f"lost the scheduler {client.scheduler.address if client.scheduler else ''}"
                            f" during round {round_ + 1} (client status {status!r})")  # from 1


def tree_nbytes(tree) -> int:
    """Bytes of all array leaves of ``tree``."""
    return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree)))


class RoundDispatch:
    """The client tasks of one round.

    client: a connected ``distributed.Client``. gvars: the global variables sent to
    every task (broadcast once to all ``n_workers`` workers on the first ``submit``). run_id and
    round_ name the task keys (``client_update-r{round}-c{client}-a{attempt}-{run_id}``).
    ``bytes_sent`` / ``bytes_received`` count weights, shipped examples or indices, and
    returned updates (bytes).
    """

    def __init__(self, client, gvars: dict, *, run_id: str, round_: int, n_workers: int):
        self.client, self.gvars, self.run_id, self.round = client, gvars, run_id, round_
        self.model_bytes = tree_nbytes(gvars)
        self.n_workers = max(1, n_workers)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.pending: dict = {}       # future -> (client, attempt)
        self.submitted_at: dict = {}  # future -> time.time() of submission
        self.task_bytes: dict = {}    # future -> bytes sent for it (weights + its data)
        self._gfut = None

    def _broadcast(self) -> None:
        self._gfut = self.client.scatter([self.gvars], broadcast=True, hash=False)[0]
        self.bytes_sent += self.model_bytes * self.n_workers

    def submit(self, k: int, attempt: int, spec: dict, shipped: Optional[dict]) -> None:
        """Submit ``client_update`` for client ``k``; ``shipped``: its examples or None."""
        if self._gfut is None:
            self._broadcast()
        data_bytes = (shipped["images"].nbytes + shipped["labels"].nbytes if shipped is not None
                      else spec["data"]["indices"].nbytes)
        self.bytes_sent += data_bytes
        # Shipped examples are embedded in the task (not scattered): the scheduler keeps
        # them and can re-run the task elsewhere when the worker holding it is lost.
        with dask.config.set({"distributed.admin.large-graph-warning-threshold": "2GB"}):
            fut = self.client.submit(client_update, self._gfut, spec, shipped, pure=False,
                                     key=f"client_update-r{self.round}-c{k}-a{attempt}-{self.run_id}")
        self.pending[fut] = (k, attempt)
        self.submitted_at[fut] = time.time()
        self.task_bytes[fut] = self.model_bytes + data_bytes

    def completed(self, deadline: Optional[float],
                  stop: Callable[[], bool] = lambda: False) -> Iterator[tuple]:
        """Yield ``(future, client, attempt)`` as tasks finish or fail, in client order
        within each batch, until none is pending, ``stop()`` is true, or ``deadline``
        (``time.time()`` seconds; None: none) passes. Tasks submitted while iterating
        are waited for too."""
        while self.pending:
            if stop():
                return
            timeout = None if deadline is None else max(0.0, deadline - time.time())
            if timeout == 0.0:
                return
            slice_s = WAIT_SLICE_S if timeout is None else min(timeout, WAIT_SLICE_S)
            try:
                done, _ = dask_wait(list(self.pending), timeout=slice_s,
                                    return_when="FIRST_COMPLETED")
            except (TimeoutError, DaskTimeoutError):
                check_connected(self.client, self.round)
                if deadline is not None and time.time() >= deadline:
                    return
                continue
            except FuturesCancelledError:
                # The client cancels every future when it loses the scheduler: stop with
                # GridLostError (the last checkpoint stays resumable) rather than retry.
                check_connected(self.client, self.round)
                # Inputs lost with a worker (e.g. the broadcast weights on a killed
                # desktop): those tasks count as failed and may be re-submitted.
                done = {f for f in self.pending if f.status != "pending"}
                if self._gfut is not None and self._gfut.status != "finished":
                    self._broadcast()
            for fut in sorted(done, key=lambda f: self.pending[f]):
                k, attempt = self.pending.pop(fut)
                if fut.status != "finished":
                    check_connected(self.client, self.round)  # may mean a lost scheduler
                yield fut, k, attempt

    def result(self, fut) -> dict:
        """The finished task's result (released on the cluster; its bytes counted)."""
        res = fut.result()
        fut.release()
        self.bytes_received += tree_nbytes(res["variables"])
        return res

    def cancel_pending(self) -> list[tuple]:
        """Cancel every pending task; ``[(future, client, attempt, submitted_at)]``."""
        out = [(f, k, a, self.submitted_at[f]) for f, (k, a) in self.pending.items()]
        if out:
            self.client.cancel([f for f, *_ in out], force=True)
        self.pending.clear()
        return out

    def release(self) -> None:
        """Drop the broadcast weights from the cluster."""
        if self._gfut is not None:
            self._gfut.release()
            self._gfut = None
