"""One round's client tasks on the Dask grid: broadcast, submit, wait, cancel.

``RoundDispatch`` holds the futures of one round and the bytes that crossed the
network for it; the engine decides what each finished task means::

    d = RoundDispatch(dask_client, gvars, run_id=..., round_=r, workers=healthy, deadline=t)
    d.submit(k, attempt, spec, shipped)          # False: no worker took the weights
    for fut, k, attempt in d.completed(deadline, stop=lambda: quota_met()):
        ...  # fut.status == 'finished' -> d.result(fut) (TaskTimeout: not in time); else failed
    late = d.cancel_pending()   # stragglers: [(fut, k, attempt, submitted_at), ...]
    d.release()

No phase waits on an unresponsive (e.g. ``SIGSTOP``ped) worker beyond the round's
deadline:

- the broadcast sends the global weights to each healthy worker concurrently and
  keeps those that acknowledged in time (``bounded_broadcast``): within the time
  left to the deadline (without one: ``BROADCAST_LIMIT_S`` or the time its bytes need
  on the slowest link, whichever is longer); once ``max(BROADCAST_SPREAD_MIN_S,
  BROADCAST_SPREAD x`` the first acknowledgement's time) has passed after the first
  worker acknowledged, a worker still receiving is left out when it has been silent
  (no heartbeat) for ``BROADCAST_SILENT_S``; tasks are then restricted to the
  workers that hold the weights (``workers=``, ``allow_other_workers=False``);
- waiting for results happens in slices of at most ``WAIT_SLICE_S`` seconds (so a
  lost scheduler is noticed, ``GridLostError``) and ends at the deadline;
- fetching a finished result goes on while its desktop heartbeats, within a limit
  sized from the result's bytes and the round's deadline (``grid.fetch``: a slow link
  is not an unresponsive desktop); cancelling is a message to the scheduler, never a
  wait on a worker.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time
import uuid
from typing import Callable, Iterator, Optional

import dask
import jax
import numpy as np
from distributed import TimeoutError as DaskTimeoutError
from distributed import wait as dask_wait
from distributed.client import FuturesCancelledError

from fedjax_grid.compression import decode, payload_nbytes
from fedjax_grid.failures import Failed, InputLost, ResultLost, TaskError, TaskTimeout, WorkerLost
from fedjax_grid.grid.fetch import fetch_result, payload_limit_s, start_transfer
from fedjax_grid.grid.tasks import client_update

#: Longest single wait for task results (s) before the engine checks its scheduler link.
WAIT_SLICE_S = 2.0
#: Longest wait (s) before ``completed`` asks its ``stop()`` again (a Stop ends a round
#: within this, plus cancelling and recording).
STOP_POLL_S = 0.2
#: Longest broadcast of the global weights when the round has no deadline (s): at least
#: this, or the time its bytes need on the slowest link (``grid.fetch.payload_limit_s``).
BROADCAST_LIMIT_S = 60.0
#: Once one worker acknowledged the weights after t seconds, the others get
#: max(BROADCAST_SPREAD_MIN_S, BROADCAST_SPREAD * t) more seconds before they are left out.
BROADCAST_SPREAD = 4.0
BROADCAST_SPREAD_MIN_S = 2.0
#: After the spread, a worker still receiving is left out once it has been silent (no
#: heartbeat) this long (s); one still heard from keeps receiving until the limit.
BROADCAST_SILENT_S = 3.0
#: Seconds between two looks at the receiving workers during a broadcast.
BROADCAST_POLL_S = 0.5


class GridLostError(ConnectionError):
    """The coordinator lost its Dask scheduler mid-round.

    An ``OSError`` (the CLI turns it into one line ``error: lost the Dask cluster ...``);
    the round in progress is dropped and the last checkpoint stays resumable.
    """


def check_connected(dask_client, round_: int) -> None:
    """Raise ``GridLostError`` unless ``dask_client`` is still connected to its scheduler."""
    status = getattr(dask_client, "status", "running")
    if status != "running":
        scheduler = dask_client.scheduler
        raise GridLostError(f"lost the scheduler {scheduler.address if scheduler else ''}"
                            f" during round {round_ + 1} (client status {status!r})")  # from 1


_WORKER_ADDR = re.compile(r"(?:tcp|tls|inproc|ucx)://[^\s,'\"]+?(?=\.?(?:\s|$))")


def scheduler_task_workers(dask_scheduler=None, keys=()) -> dict:
    """(runs on the scheduler) key -> address of the worker running / that ran it (or holds
    its result)."""
    out = {}
    for key in keys:
        ts = dask_scheduler.tasks.get(key)
        if ts is None:
            continue
        if ts.processing_on is not None:
            out[key] = ts.processing_on.address
        elif getattr(ts, "erred_on", None):
            out[key] = sorted(ts.erred_on)[0]
        elif ts.who_has:  # finished: the worker that holds its result
            out[key] = sorted(ws.address for ws in ts.who_has)[0]
    return out


def scheduler_restrict(dask_scheduler=None, keys=(), allowed=(), address: str = "") -> list:
    """(runs on the scheduler) Restrict each of ``keys`` to the workers ``allowed`` (work
    stealing respects it); the keys assigned to ``address`` now."""
    out = []
    for key in keys:
        ts = dask_scheduler.tasks.get(key)
        if ts is None:
            continue
        ts.worker_restrictions = set(allowed)
        if ts.processing_on is not None and ts.processing_on.address == address:
            out.append(key)
    return out


def task_workers(dask_client, keys, wait_s: float = 0.0) -> dict:
    """Which worker runs (or ran, for an erred task) each key; {} if the scheduler can't say.
    ``wait_s``: ask again (every 0.1 s, up to that long) while a key is not placed yet --
    a task submitted a moment ago may not have reached the scheduler."""
    keys, end = list(keys), time.monotonic() + wait_s
    while True:
        try:
            out = dask_client.run_on_scheduler(scheduler_task_workers, keys=keys) if keys else {}
        except Exception:  # noqa: BLE001 - attribution is best effort, never fatal
            return {}
        if len(out) == len(keys) or time.monotonic() >= end:
            return out
        time.sleep(0.1)


def failure_of(fut) -> Failed:
    """Why the future failed, as a :class:`~fedjax_grid.failures.Failed` kind.

    Dask runs with ``allowed-failures=0`` (see ``grid.cluster``), so a task whose worker
    died errs with ``KilledWorker`` instead of being re-run silently: that is
    :class:`~fedjax_grid.failures.WorkerLost` (naming the lost worker); a failure kind
    raised by the task itself (``StaleCopy``, ``SimulatedDropout``) comes back as it is;
    anything else is a :class:`~fedjax_grid.failures.TaskError`.
    """
    if getattr(fut, "status", None) == "cancelled":  # not by us: we forget what we cancel
        return InputLost(f"the global weights it needed were lost before it ran "
                         f"({cancel_reason(fut)})")
    try:
        exc = fut.exception(timeout=5)
    except Exception as e:  # noqa: BLE001
        exc = e
    if isinstance(exc, Failed):
        return exc
    if type(exc).__name__ == "KilledWorker":
        m = _WORKER_ADDR.search(str(exc).splitlines()[0] if str(exc) else "")
        return WorkerLost(m.group(0) if m else "")
    return TaskError.of(exc)


def cancel_reason(fut) -> str:
    """Why the scheduler cancelled ``fut`` (Dask's reason, e.g. 'lost dependencies')."""
    try:
        fut.result(timeout=1)
    except concurrent.futures.CancelledError as e:  # Dask's FutureCancelledError
        return f"Dask: {getattr(e, 'reason', '') or 'cancelled'}"
    except Exception as e:  # noqa: BLE001 - it was not cancelled after all
        return TaskError.of(e).reason
    return "Dask: cancelled"


def bounded_broadcast(dask_client, value, workers, limit_s: float):
    """Scatter ``value`` under one key to each of ``workers`` concurrently, bounded in time.

    Each worker is sent the value directly by the coordinator. Once the first worker
    acknowledged after t seconds and the spread ``max(BROADCAST_SPREAD_MIN_S,
    BROADCAST_SPREAD x t)`` has passed, a worker still receiving is left out (its
    transfer cancelled) only when it is silent -- no heartbeat for ``BROADCAST_SILENT_S``
    -- so a desktop on a slow downlink that is still receiving keeps its place until
    ``limit_s``. Returns ``(future or None, sorted addresses holding the value)``.
    """
    workers = list(workers)
    if not workers or limit_s <= 0:
        return None, []
    key = f"global-weights-{uuid.uuid4().hex}"

    async def go():
        start = time.monotonic()
        end = start + limit_s
        # timeout: how long _scatter looks for the worker on the scheduler (a worker
        # that just left is refused at once instead of after the client's timeout).
        jobs = {asyncio.ensure_future(dask_client._scatter({key: value}, workers=[w], direct=True,
                                                      hash=False, timeout=min(1.0, limit_s))): w
                for w in workers}
        pending, ok, futs, spread_end = set(jobs), [], [], None
        while pending:
            left = end - time.monotonic()
            if left <= 0:
                break
            done, pending = await asyncio.wait(pending, timeout=min(left, BROADCAST_POLL_S),
                                               return_when=asyncio.FIRST_COMPLETED)
            for d in done:
                if not d.cancelled() and d.exception() is None:
                    ok.append(jobs[d])
                    futs.append(d.result()[key])
            now = time.monotonic()
            if ok and spread_end is None:
                spread_end = now + max(BROADCAST_SPREAD_MIN_S, BROADCAST_SPREAD * (now - start))
            if pending and spread_end is not None and now >= spread_end:
                pending = await _drop_silent(dask_client, pending, jobs)
        for p in pending:
            p.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2.0)
        return ok, futs

    ok, futs = dask_client.sync(go)
    return (futs[0] if futs else None), sorted(ok)


async def _drop_silent(dask_client, pending: set, jobs: dict) -> set:
    """The transfers of ``pending`` whose worker was heard from within
    ``BROADCAST_SILENT_S``; the others are cancelled (all of them when the scheduler
    cannot say)."""
    from fedjax_grid.grid.health import scheduler_worker_view
    try:
        view = await dask_client._run_on_scheduler(scheduler_worker_view)
    except Exception:  # noqa: BLE001 - no view: leave every late one out, as before
        view = {}
    keep = {p for p in pending
            if view.get(jobs[p], {}).get("age_s", float("inf")) <= BROADCAST_SILENT_S}
    for p in pending - keep:
        p.cancel()
    return keep


def tree_nbytes(tree) -> int:
    """Bytes of all array leaves of ``tree``."""
    return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree)))


def sent_nbytes(value) -> int:
    """Bytes of what is broadcast: a codec payload's ``payload_nbytes`` (``server.broadcast_codec``),
    else the arrays of the global variables."""
    if isinstance(value, dict) and "broadcast" in value:
        return payload_nbytes(value)
    return tree_nbytes(value)


def decode_result(res: dict) -> dict:
    """A task's result with its update decoded: ``res['delta']`` (the tree the coordinator
    folds) and ``res['bytes_out']`` (payload bytes of the update plus the BatchNorm
    statistics and the client algorithm's state: what came back over the link)."""
    res["bytes_out"] = payload_nbytes(res["update"]) + tree_nbytes(res.get("batch_stats")) \
        + tree_nbytes(res.get("algorithm_state"))
    res["delta"] = decode(res.pop("update"))
    return res


class RoundDispatch:
    """The client tasks of one round.

    dask_client: a connected ``distributed.Client``. gvars: the global variables (or
    their broadcast payload, ``server.broadcast_codec``; ``model_bytes`` counts its
    encoded bytes; or a function of the receiving workers' addresses that returns the
    value, ``server.broadcast='delta'``) sent to every task (broadcast on the first
    ``submit`` to the workers ``workers()`` names, again when none of them holds it any
    more). run_id and round_ name the task keys
    (``client_update-r{round}-c{client}-a{attempt}-{run_id}``). deadline: the round's
    end (``time.time()`` seconds) or None. ``bytes_sent`` / ``bytes_received`` count
    weights, shipped examples or indices, and returned updates (bytes). ``ready``:
    the workers that hold the weights and may run this round's tasks.
    """

    def __init__(self, dask_client, gvars: dict, *, run_id: str, round_: int,
                 workers: Callable[[], list], deadline: Optional[float] = None):
        self.dask_client, self.gvars = dask_client, gvars
        self.run_id, self.round = run_id, round_
        self.model_bytes = 0  # bytes of the value broadcast (set when it is sent)
        self.workers = workers
        self.deadline = deadline
        self.ready: list[str] = []
        self._old_gfuts: list = []
        self.bytes_sent = 0
        self.bytes_received = 0
        self.broadcast_s = 0.0        # seconds spent broadcasting the weights
        self.pending: dict = {}       # future -> (client, attempt)
        self.submitted_at: dict = {}  # future -> time.time() of submission
        self.task_bytes: dict = {}    # future -> bytes sent for it (weights + its data)
        self._args: dict = {}         # future -> (spec, shipped, avoid): to send it again
        self._transfers: dict = {}    # future -> its result's transfer, begun (start_transfer)
        self.resent = 0               # tasks sent again after their input was lost
        self._gfut = None

    def _broadcast(self) -> None:
        """Send the weights to the healthy workers; retry (briefly) while none took them
        and time is left -- workers just lost may still be listed for a moment."""
        if self._gfut is not None:
            self._old_gfuts.append(self._gfut)
        self._gfut, self.ready = None, []
        t0 = time.perf_counter()
        try:
            self._broadcast_until_taken()
        finally:
            self.broadcast_s += time.perf_counter() - t0

    def _broadcast_until_taken(self) -> None:
        while True:
            candidates = self.workers()  # may wait for workers to (re)join
            if not candidates or (self.deadline is not None and self.deadline - time.time() <= 0):
                return
            value = self.gvars(candidates) if callable(self.gvars) else self.gvars
            self.model_bytes = sent_nbytes(value)
            end = self.deadline if self.deadline is not None else \
                time.time() + max(BROADCAST_LIMIT_S, payload_limit_s(self.model_bytes))
            self._gfut, self.ready = bounded_broadcast(self.dask_client, value, candidates,
                                                       end - time.time())
            self.bytes_sent += self.model_bytes * len(self.ready)
            if self.ready or (self.deadline is not None and time.time() >= self.deadline):
                return
            time.sleep(0.5)

    def exclude(self, address: str) -> None:
        """Give no more of this round's tasks to ``address`` (lost or quarantined)."""
        if address in self.ready:
            self.ready.remove(address)

    def submit(self, k: int, attempt: int, spec: dict, shipped: Optional[dict],
               avoid: str = "") -> bool:
        """Submit ``client_update`` for client ``k``; ``shipped``: its examples or None;
        ``avoid``: a worker not to use when another one is ready (a retry).

        The task key carries ``spec['round']`` (the round index; the task number in
        asynchronous rounds). Returns False (nothing submitted) when no worker took the
        global weights in time.
        """
        if self._gfut is None or not self.ready:
            self._broadcast()
        if self._gfut is None:
            return False
        data_bytes = (shipped["images"].nbytes + shipped["labels"].nbytes if shipped is not None
                      else spec["data"]["indices"].nbytes)
        data_bytes += tree_nbytes(spec.get("algorithm_payload"))  # a client algorithm's state
        self.bytes_sent += data_bytes
        # Shipped examples are embedded in the task (not scattered): the scheduler keeps
        # them and can re-run the task elsewhere when the worker holding it is lost.
        key = f"client_update-r{spec['round']}-c{k}-a{attempt}-{self.run_id}"
        with dask.config.set({"distributed.admin.large-graph-warning-threshold": "2GB"}):
            fut = self.dask_client.submit(client_update, self._gfut, spec, shipped, pure=False,
                                     key=key + (f"-s{self.resent}" if self.resent else ""),
                                     workers=[w for w in self.ready if w != avoid] or list(self.ready),
                                     allow_other_workers=False)
        self.pending[fut] = (k, attempt)
        self.submitted_at[fut] = time.time()
        self._args[fut] = (spec, shipped, avoid)
        # server.broadcast='delta': what this client downloads (the steps from the version
        # it holds), not what was scattered to the worker
        down = spec.get("download_nbytes")
        self.task_bytes[fut] = (self.model_bytes if down is None else down) + data_bytes
        self.last_future = fut
        return True

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
            slice_s = min(STOP_POLL_S, WAIT_SLICE_S if timeout is None else timeout)
            try:
                done, _ = dask_wait(list(self.pending), timeout=slice_s,
                                    return_when="FIRST_COMPLETED")
            except (TimeoutError, DaskTimeoutError):
                check_connected(self.dask_client, self.round)
                if deadline is not None and time.time() >= deadline:
                    return
                continue
            except FuturesCancelledError:
                # The Dask client cancels every future when it loses the scheduler: stop with
                # GridLostError (the last checkpoint stays resumable) rather than retry.
                check_connected(self.dask_client, self.round)
                # Inputs lost with a worker (e.g. the broadcast weights on a killed
                # desktop): those tasks count as failed and may be re-submitted.
                done = {f for f in self.pending if f.status != "pending"}
                if self._gfut is not None and self._gfut.status != "finished":
                    self.ready = []  # re-broadcast on the next submit
            self._prefetch(done)
            for fut in sorted(done, key=lambda f: self.pending[f]):
                k, attempt = self.pending.pop(fut)
                if fut.status != "finished":
                    check_connected(self.dask_client, self.round)  # may mean a lost scheduler
                if fut.status == "cancelled" and self._send_again(fut, k, attempt):
                    continue
                self._args.pop(fut, None)
                yield fut, k, attempt

    def _prefetch(self, done) -> None:
        """Begin fetching every finished result of ``done`` at once: each desktop sends
        over its own link, side by side (``result`` then waits for its transfer)."""
        for f in done:
            if f.status == "finished" and f not in self._transfers:
                self._transfers[f] = start_transfer(self.dask_client, f)

    def take_back(self, address: str) -> int:
        """Keep this dispatch's pending tasks away from ``address`` (just quarantined,
        already excluded): none may be stolen by it any more (their allowed workers become
        the ready ones), and those queued there are sent to the ready workers -- same
        attempt, no row, no retry spent. Tasks that finished or failed there meanwhile are
        recorded as they are. Returns how many moved (none when no other worker is ready)."""
        if not self.ready or not self.pending:
            return 0
        try:
            there = set(self.dask_client.run_on_scheduler(
                scheduler_restrict, keys=[f.key for f in self.pending], allowed=list(self.ready),
                address=address))
        except Exception:  # noqa: BLE001 - best effort: its tasks fail there and are retried
            return 0
        moved = [f for f in list(self.pending) if f.key in there and f.status == "pending"]
        if moved:
            self.dask_client.cancel(moved, force=True)
        for f in moved:
            self._send_again(f, *self.pending.pop(f), rebroadcast=False)
        return len(moved)

    def _send_again(self, fut, k: int, attempt: int, rebroadcast: bool = True) -> bool:
        """A task the scheduler cancelled before it ran (its input, the global weights, went
        with the desktops holding it): broadcast the weights again and send the same
        attempt again (not a failure of the task: no row, no retry spent). False when no
        worker took the weights (the caller records the task ``failed``, ``InputLost``)."""
        spec, shipped, avoid = self._args.pop(fut)
        if rebroadcast:
            self.ready = []  # the weights this dispatch sent may be gone: send them again
        self.resent += 1
        if not self.submit(k, attempt, spec, shipped, avoid=avoid):
            return False
        new = self.last_future
        self.submitted_at[new] = self.submitted_at[fut]
        self.task_bytes[new] += self.task_bytes[fut]
        self._moved(fut, new)
        fut.release()
        return True

    def _moved(self, old, new) -> None:
        """``old`` was sent again as ``new`` (subclasses move their own books)."""

    def result(self, fut) -> dict:
        """The finished task's result (released on the cluster; its bytes counted).

        Fetched by :func:`fedjax_grid.grid.fetch.fetch_result`: as long as its desktop
        heartbeats, within a limit sized from the result's bytes and the round's deadline.
        Raises :class:`~fedjax_grid.failures.TaskTimeout` (naming the desktop and why) when
        it could not be fetched in time (the task counts as late), :class:`ResultLost`
        when the result went with its worker (the scheduler forgot the finished task):
        the task counts as failed and may be re-submitted."""
        try:
            res = fetch_result(self.dask_client, fut, self.deadline, self._transfers.pop(fut, None),
                               meanwhile=lambda: self._prefetch(list(self.pending)))
        except TaskTimeout:
            fut.release()
            raise
        except concurrent.futures.CancelledError as e:  # Dask's FutureCancelledError too
            raise ResultLost(f"its worker left holding it ({TaskError.of(e).reason})") from None
        fut.release()
        res = decode_result(res)
        self.bytes_received += res["bytes_out"]
        return res

    def cancel(self, futures) -> list[tuple]:
        """Cancel ``futures`` (those still pending); ``[(future, client, attempt, submitted_at)]``."""
        out = [(f, *self.pending.pop(f), self.submitted_at[f]) for f in list(futures)
               if f in self.pending]
        for f, *_ in out:
            self._args.pop(f, None)
        for f in futures:
            transfer = self._transfers.pop(f, None)
            if transfer is not None:
                transfer[0].cancel()
        if out:
            self.dask_client.cancel([f for f, *_ in out], force=True)
        return out

    def cancel_pending(self) -> list[tuple]:
        """Cancel every pending task; ``[(future, client, attempt, submitted_at)]``."""
        return self.cancel(list(self.pending))

    def release(self) -> None:
        """Drop the broadcast weights from the cluster (and transfers never read)."""
        for transfer, _ in self._transfers.values():
            transfer.cancel()
        self._transfers.clear()
        for f in self._old_gfuts + ([self._gfut] if self._gfut is not None else []):
            f.release()
        self._old_gfuts, self._gfut = [], None


class VersionedDispatch(RoundDispatch):
    """Client tasks trained from different global versions in flight at once (FedBuff).

    ``set_version(v, gvars)`` makes ``gvars`` the weights of the next submissions
    (broadcast on the next ``submit``); each task remembers its task number and the
    version it started from (``origin[future] = (task, version)``, ``forget(future)``).
    A version's broadcast is released once it is not the newest and none of its tasks
    is pending. Task keys carry the run's task number (``spec['round']``) in place of a
    round. No deadline applies to
    the whole; ``overdue(limit_s)`` lists the tasks running longer than ``limit_s``
    and ``cancel(futures)`` drops them.
    """

    def __init__(self, dask_client, *, run_id: str, workers: Callable[[], list]):
        super().__init__(dask_client, {}, run_id=run_id, round_=0, workers=workers)
        self.version = -1
        self.origin: dict = {}           # future -> (task number, global version trained from)
        self._gfut_of: dict = {}         # version -> its broadcast future

    def set_version(self, version: int, gvars: dict) -> None:
        if self._gfut is not None:
            self._gfut_of[self.version] = self._gfut
        self.version, self.gvars = int(version), gvars
        self._gfut, self.ready = None, []
        self._release_unused()

    def submit(self, k: int, attempt: int, spec: dict, shipped: Optional[dict],
               avoid: str = "") -> bool:
        """Submit client ``k``'s task number ``spec['round']`` on the newest version
        (see :meth:`RoundDispatch.submit`); False when no worker took the weights in time."""
        self.round = int(spec["round"])
        if not super().submit(k, attempt, spec, shipped, avoid=avoid):
            return False
        self.origin[self.last_future] = (self.round, self.version)
        return True

    def _moved(self, old, new) -> None:
        """A task sent again trains from the newest version (its old one's weights are gone)."""
        self.origin[new] = (self.origin.pop(old)[0], self.version)

    def forget(self, fut) -> tuple:
        """``(task, version)`` of a finished, failed or cancelled task, dropped from the books."""
        return self.origin.pop(fut)

    def overdue(self, limit_s: float) -> list:
        now = time.time()
        return [f for f in self.pending if now - self.submitted_at[f] > limit_s]

    def cancel(self, futures) -> list[tuple]:
        out = super().cancel(futures)
        self._release_unused()
        return out

    def _release_unused(self) -> None:
        busy = {self.origin[f][1] for f in self.pending if f in self.origin}
        for v in [v for v in self._gfut_of if v not in busy and v != self.version]:
            self._gfut_of.pop(v).release()

    def completed(self, deadline, stop=lambda: False):
        for item in super().completed(deadline, stop=stop):
            yield item
            self._release_unused()

    def release(self) -> None:
        self._old_gfuts += list(self._gfut_of.values())
        self._gfut_of.clear()
        super().release()
