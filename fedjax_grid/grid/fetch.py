"""Fetching a finished task's result: a slow link is not an unresponsive desktop.

A result is fetched by one transfer that is never restarted (``fetch_result``); while it
runs, the coordinator asks the scheduler every ``POLL_S`` seconds about the desktop
that holds the result -- when its last heartbeat arrived and how many bytes the result
has -- and decides with :func:`verdict` (pure), which gives up only when

- the desktop is **unresponsive**: no heartbeat for ``UNRESPONSIVE_S`` seconds (a frozen
  or switched-off desktop; a desktop busy sending still heartbeats: its heartbeats
  queue behind the transfer for at most the link's queueing delay, ~1 s here);
- the transfer took longer than its **payload allows**: ``RESULT_TIMEOUT_S +
  8 x bytes / SLOWEST_LINK_BPS`` seconds (a 2.3 MB update: 10 + 73 s, sized for the
  slowest link the grid is meant to have, 256 kbit/s);
- the **round's deadline** passed (plus ``DEADLINE_GRACE_S``, at least 1 s after the
  fetch began): a round with a deadline ends on time however its results travel.

A giving-up is a :class:`~fedjax_grid.failures.TaskTimeout` whose reason names the
desktop, the payload and which of the three it was. Before, a result had to arrive
within a fixed 10 s: on a 1 Mbit/s uplink a 2.3 MB float32 update (~19 s) was recorded
late every time although its desktop was alive and sending (issue 23).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Optional

from distributed import TimeoutError as DaskTimeoutError

from fedjax_grid.failures import TaskTimeout

#: Seconds between two looks at the result holder's heartbeat while a result travels.
POLL_S = 1.0
#: A desktop whose last heartbeat is older than this (s) is unresponsive.
UNRESPONSIVE_S = 10.0
#: Fixed part of a result's time limit (s): connection set-up, (de)serialisation.
RESULT_TIMEOUT_S = 10.0
#: The slowest link a result is sized for (bits per second).
SLOWEST_LINK_BPS = 256e3
#: Time a fetch may run past the round's deadline (s).
DEADLINE_GRACE_S = 1.0


def payload_limit_s(nbytes: Optional[int]) -> float:
    """Seconds a result of ``nbytes`` bytes may take to arrive (see the module)."""
    return RESULT_TIMEOUT_S + 8.0 * float(nbytes or 0) / SLOWEST_LINK_BPS


def _mb(nbytes: Optional[int]) -> str:
    return "?" if not nbytes else f"{nbytes / 1e6:.2f} MB"


def verdict(*, elapsed_s: float, holder: dict, deadline_left_s: Optional[float]) -> Optional[str]:
    """Why to give up fetching a result now (None: keep waiting).

    elapsed_s: seconds since the fetch began. holder: the scheduler's view of the result
    ``{'worker': address or '', 'nbytes': bytes or None, 'age_s': seconds since the
    holder's last heartbeat or None}``. deadline_left_s: seconds to the round's deadline
    (None: no deadline).
    """
    who, size = holder.get("worker") or "?", _mb(holder.get("nbytes"))
    age = holder.get("age_s")
    if age is not None and age > UNRESPONSIVE_S:
        return (f"result not fetched in time: worker {who} unresponsive (no heartbeat for "
                f"{age:.0f} s; result {size})")
    if deadline_left_s is not None and deadline_left_s < -DEADLINE_GRACE_S \
            and elapsed_s > DEADLINE_GRACE_S:
        return (f"result not fetched in time: the round's deadline passed while worker {who} "
                f"was still sending it ({size}, {elapsed_s:.0f} s so far)")
    limit = payload_limit_s(holder.get("nbytes"))
    if elapsed_s > limit:
        return (f"result not fetched in time: {size} from worker {who} took over {limit:.0f} s "
                f"(the limit for a {SLOWEST_LINK_BPS / 1e3:.0f} kbit/s link)")
    return None


def result_holder(dask_scheduler=None, key=None) -> dict:
    """(runs on the scheduler) the worker holding ``key``'s result, the result's bytes and
    the seconds since that worker's last heartbeat (None when it is gone)."""
    ts = dask_scheduler.tasks.get(key)
    if ts is None or not ts.who_has:
        return {"worker": "", "nbytes": getattr(ts, "nbytes", None), "age_s": None}
    ws = sorted(ts.who_has, key=lambda w: w.address)[0]
    nbytes = ts.nbytes if ts.nbytes is not None and ts.nbytes >= 0 else None
    return {"worker": ws.address, "nbytes": nbytes, "age_s": max(0.0, time.time() - ws.last_seen)}


def start_transfer(dask_client, fut) -> tuple:
    """Begin fetching the finished future ``fut``'s result now: ``(transfer, started)``
    (a concurrent future and its ``time.monotonic()``) for :func:`fetch_result`. Started
    for every result that is ready at once, the desktops' results travel side by side,
    each over its own link; fetched one after another they queued behind each other
    (3 float32 updates on three 1 Mbit/s uplinks: ~60 s instead of ~20 s)."""
    loop = dask_client.loop.asyncio_loop
    return asyncio.run_coroutine_threadsafe(dask_client._gather([fut]), loop), time.monotonic()


def fetch_result(dask_client, fut, deadline: Optional[float], started: Optional[tuple] = None,
                 meanwhile=lambda: None):
    """The result of the finished future ``fut`` (see the module); raises ``TaskTimeout``
    when giving up, ``concurrent.futures.CancelledError`` when the result went with its
    worker, or what the task raised. ``started``: its transfer, begun earlier by
    :func:`start_transfer` (the limits count from then); ``meanwhile()`` is called every
    ``POLL_S`` while it travels (the dispatch starts the transfers of results that finished
    since)."""
    transfer, start = started or start_transfer(dask_client, fut)
    holder = {}
    try:
        while True:
            try:
                return transfer.result(timeout=POLL_S)[0]
            except (concurrent.futures.TimeoutError, TimeoutError, DaskTimeoutError):
                pass
            meanwhile()
            try:
                holder = dask_client.run_on_scheduler(result_holder, key=fut.key) or holder
            except Exception:  # noqa: BLE001 - no answer this time: judge by the last one
                pass
            left = None if deadline is None else deadline - time.time()
            why = verdict(elapsed_s=time.monotonic() - start, holder=holder, deadline_left_s=left)
            if why:
                raise TaskTimeout(why)
    finally:
        transfer.cancel()
