"""Asynchronous rounds (``server.mode='async'``): FedBuff on the grid.

No barrier: ``concurrency`` (K) client tasks are kept in flight. Each task trains on the
newest global version at the time it is submitted and returns its delta against that
version; arrivals are folded by :class:`~fedjax_grid.federated.fedbuff.AsyncFold` (M
per server update, staleness-weighted, too stale ones dropped). One ``step()`` lasts
until the next server update and returns that version's row of the rounds table
(``round`` = version = server updates so far), so ``training.rounds`` counts server
updates. New tasks start on the new version while it is evaluated and checkpointed.

Who trains on what: task number ``t`` (0, 1, ... over the run; it keys the task's
randomness -- fault plan, training key -- as the round does in synchronous mode) goes
to a client drawn uniformly, seeded by ``(seed, t)``, from those not in flight and not
offline at ``t`` (with ``server.max_lag`` = L, a fairness bound: not from those L or
more folded updates ahead of the least folded client while a task is in flight, so that
a slow desktop's clients are waited for instead of left out); it trains on that
client's local set of the version being built
(the forming strategy re-draws local sets once per version, as once per round in
synchronous mode). A failed task is re-submitted (same task number, attempt + 1) on
the newest version while ``grid.retries`` allow; a task running longer than
``grid.deadline_s`` is cancelled and recorded ``late``; so are the tasks still in flight
when the run has done ``training.rounds`` server updates (``NotNeeded``: every task
submitted has a row).

Determinism and resume (the guarantee): the server state is a pure function of the
ordered arrival log (``fedbuff.replay``); which arrivals happen in which order depends
on the desktops' timing and is recorded in ``tasks.csv`` (one row per arrival, in
order, with ``version`` and ``staleness``). A checkpoint is written at every server
update, when the buffer is empty; it holds the version, the task counter and the
tasks then in flight (with the worker each ran on). A resumed run records those tasks
as ``dropped`` (their results are lost with the old coordinator) and continues from the
checkpointed version with new task numbers: it is a valid continuation, not a bitwise
replay of the interrupted run (which would need the interrupted run's arrival timing).

Stop (``RunContext.should_stop``): the tasks in flight are cancelled, and they and the
arrivals buffered for the next version (not applied) are recorded as ``stopped`` rows of
that version; the last checkpoint's meta then says nothing is in flight, so a resume
continues from it without ``dropped`` rows for those tasks.
"""
from __future__ import annotations

import time
from typing import Optional

from fedjax_grid import streams
from fedjax_grid.failures import NotNeeded, TaskTimeout
from fedjax_grid.federated.fedbuff import Arrival, AsyncFold
from fedjax_grid.federated.round_policies import ROUND_POLICIES
from fedjax_grid.grid.dispatch import VersionedDispatch, task_workers
from fedjax_grid.hazards import faults as fault_sim
from fedjax_grid.runner.arrivals import ArrivalLog
from fedjax_grid.runner.compile_time import CompileCharge
from fedjax_grid.runner.context import RoundStopped, StopRequested
from fedjax_grid.runner.stall import RunStalled, stall_message


def concurrency(cfg) -> int:
    """K: tasks in flight (default: training.clients_per_round)."""
    return int(cfg.server.concurrency or cfg.clients_per_round)


def buffer_size(cfg) -> int:
    """M: deltas per server update (default: max(1, K // 2))."""
    return int(cfg.server.buffer_size or max(1, concurrency(cfg) // 2))


def next_client(cfg, task: int, busy: set, folded: Optional[dict] = None) -> Optional[int]:
    """The client task number ``task`` trains (None: every client is busy or offline, or
    the fairness bound makes the free ones wait). ``folded``: client -> updates folded so
    far; with ``server.max_lag`` = L a client L or more ahead of the least folded client
    is not drawn while a task is in flight (the laggard's may close the gap)."""
    free = [k for k in range(cfg.partition.num_clients)
            if k not in busy and not fault_sim.is_offline(cfg.faults, cfg.seed, task, k)]
    free = fair_clients(free, busy, folded or {}, cfg.partition.num_clients, cfg.server.max_lag)
    if not free:
        return None
    return int(free[streams.rng(cfg.seed, streams.ASYNC_DRAW, task).integers(len(free))])


def fair_clients(free: list, busy: set, folded: dict, num_clients: int,
                 max_lag: Optional[int]) -> list:
    """``free`` without the clients ``max_lag`` or more updates ahead of the least folded
    client (all of ``free`` without a bound, or when nothing is in flight: never wait on
    nobody)."""
    if not max_lag or not free:
        return free
    floor = min(int(folded.get(k, 0)) for k in range(num_clients))
    fair = [k for k in free if int(folded.get(k, 0)) - floor < max_lag]
    return fair if fair or busy else free


@ROUND_POLICIES.register("async")
class AsyncRounds:
    """FedBuff over the run context's grid, records and checkpoints (see the module)."""

    def __init__(self, ctx):
        self.ctx = ctx
        cfg = ctx.config
        self.k, self.m = concurrency(cfg), buffer_size(cfg)
        self.fold: Optional[AsyncFold] = None
        self.dispatch: Optional[VersionedDispatch] = None
        self.task = int(ctx.restored.get("async", {}).get("task", 0))
        self.assignments = None
        #: client -> updates folded so far (``server.max_lag``)
        self.folded: dict[int, int] = {}
        #: every arrival in order, with its delta (``fedbuff.replay`` input); tests only
        self.keep_arrivals = False
        self.arrivals: list[Arrival] = []
        #: every arrival in order, in the run folder (``runner.arrivals``; ``fedjax-grid replay``)
        self.log = ArrivalLog(ctx.out_dir, start=int(ctx.restored.get("async", {}).get("arrivals", 0)))
        self._t_version = None
        #: tasks' compile spans and the versions' intervals (``runner.compile_time``)
        self.compile = CompileCharge()

    # -- one server update -------------------------------------------------------
    def step(self, prelaunch: bool = False) -> dict:
        """Run until the next server update; its rounds-table row. (``prelaunch`` is moot:
        tasks of the next version always train while this one is evaluated.)"""
        ctx = self.ctx
        ctx.start_clock()
        rows = self._begin() if self.fold is None else []
        ctx.note_workers()  # names of the workers a failed or cancelled task ran on
        v = self.fold.version
        t_start = self._t_version or time.time()
        self.assignments, strategy_state = ctx.forming(v)
        sent0, received0 = self.dispatch.bytes_sent, self.dispatch.bytes_received
        try:
            self._until_update(v, rows)
        except StopRequested:
            raise self._stopped(rows) from None
        ctx.state, ctx.strategy_state, ctx.round = self.fold.state, strategy_state, self.fold.version
        self.dispatch.set_version(ctx.round, ctx.broadcast.value(ctx.global_variables, ctx.round))
        if not ctx.done:
            try:
                self._fill(rows)  # the next version's tasks train while this one is evaluated
            except StopRequested:
                pass   # this version is kept; the run stops after it is recorded
        else:
            rows += self._cancel_in_flight(f"still running when the run ended "
                                           f"(training.rounds={ctx.round} server updates)")
        for t in rows:
            t["round"] = ctx.round  # the server update the arrival was folded into (or not)
        self._recharge()
        closing = {}

        def charge(own: float) -> float:   # compilation spent within this version
            closing.update(start=t_start, end=time.time(), own=own)
            return self.compile.charge(t_start, closing["end"], own)
        row = ctx.finish_round(rows, t_start=t_start, sampled=len({t["client"] for t in rows}),
                               quorum=True, sent=self.dispatch.bytes_sent - sent0,
                               received=self.dispatch.bytes_received - received0,
                               extra={"async": {"task": self.task, "in_flight": self.in_flight(),
                                                  "arrivals": self.log.count}}, charge=charge)
        self.compile.close(ctx.round, **closing)
        self._t_version = time.time()
        return row

    def _recharge(self) -> None:
        """Earlier versions' rows get the compilation that tasks arrived since spent in
        them (``compile_s`` up, ``round_time_s`` down by as much); versions no task in
        flight can reach any more are forgotten."""
        records = self.ctx.records
        current = {v: (records.round_row(v) or {}).get("compile_s") for v in self.compile.windows}
        for v, (compile_s, round_time_s) in self.compile.recharged(current).items():
            records.update_round(v, compile_s=compile_s, round_time_s=round_time_s)
        d = self.dispatch
        oldest = min((d.submitted_at[f] for f in d.pending), default=time.time())
        self.compile.prune(oldest - 60.0)   # a minute's margin for desktops' clocks

    def _until_update(self, v: int, rows: list[dict]) -> None:
        """Keep K tasks in flight and fold arrivals until version ``v`` is followed by the
        next server update; task rows are appended to ``rows``. ``StopRequested`` on Stop."""
        ctx = self.ctx
        self._fill(rows)
        while self.fold.version == v:
            ctx.check_stop()
            if not self.dispatch.pending:
                ctx.healthy_workers()  # NoWorkersError after grid.wait_for_workers_s
                time.sleep(0.2)
                self._fill(rows)
                self._stop_if_stalled(rows)
                continue
            for fut, k, attempt in self.dispatch.completed(
                    self._deadline(), stop=lambda: self.fold.version != v or ctx.stop_requested()):
                rows += self._arrived(fut, k, attempt)
                if self.fold.version != v:
                    break  # one server update per step: later arrivals wait for the next
                self._stop_if_stalled(rows)
                self._fill(rows)
            rows += self._cancel_overdue()
            self._stop_if_stalled(rows)

    def _stopped(self, rows: list[dict]) -> RoundStopped:
        """Cancel the tasks in flight; record them and this version's arrivals as
        ``stopped`` rows of the version being built; the exception that ends the run."""
        ctx, d = self.ctx, self.dispatch
        version = self.fold.version + 1
        out = ctx.stopped_rows(rows, version)
        out += ctx.stop_in_flight(d, list(d.pending), version, tags_of=lambda fut: {
            "version": d.forget(fut)[1], "staleness": None})
        ctx.record_stop(out, {"async": {"task": self.task, "in_flight": []}})
        return RoundStopped(version, len(out))

    def stop(self) -> int:
        """Stop between server updates: the tasks in flight (training the next version)
        are cancelled and recorded as ``stopped``; the number of task rows recorded."""
        if self.dispatch is None:
            return 0
        return self._stopped([]).tasks

    def _stop_if_stalled(self, rows: list[dict]) -> None:
        """``RunStalled`` once ``grid.max_rounds_without_update`` x K task outcomes in a row
        brought no update into the buffer; their rows are recorded first."""
        n = self.ctx.config.grid.max_rounds_without_update
        tail = []
        for t in reversed(rows):
            if t["status"] == "ok":
                break
            tail.append(t)
        if not n or len(tail) < n * self.k:
            return
        for t in rows:
            t["round"] = self.fold.version + 1  # the server update they were meant for
            self.ctx.records.add_task(t)
        self.ctx.save_records()
        raise RunStalled(stall_message(
            tail, n=n, unit=f"x {self.k} task outcomes in a row (K={self.k} in flight)",
            done=self.ctx.round))

    def _begin(self) -> list[dict]:
        """The fold and dispatch of this process; rows of tasks lost by a resume."""
        ctx, s = self.ctx, self.ctx.config.server
        self.log.truncate()  # arrivals of a buffer the stopped coordinator never flushed
        self.folded = self._folded_so_far()
        self.fold = AsyncFold(ctx.exp.algorithm, ctx.state, buffer_size=self.m,
                              staleness=s.staleness, max_staleness=s.max_staleness,
                              on_flush=ctx.recalibrated)
        self.dispatch = VersionedDispatch(ctx.grid.client, run_id=ctx.run_id,
                                          workers=lambda: ctx.healthy_workers())
        self.dispatch.set_version(self.fold.version,
                                  ctx.broadcast.value(ctx.global_variables, self.fold.version))
        ctx.note_workers()
        now = time.time()
        rows = []
        for task, k, attempt, version, *where in ctx.restored.get("async", {}).get("in_flight", []):
            rows.append({**ctx.task_row(
                self.fold.version, k, attempt, "dropped", span=(now, now),
                worker=where[0] if where else "",
                reason=f"task {task} was in flight when the coordinator stopped; its result is "
                       "lost (resume)"), "version": int(version), "staleness": None})
        return rows

    def _folded_so_far(self) -> dict:
        """client -> updates folded by the records so far (a resumed run keeps its counts)."""
        tasks = self.ctx.records.tasks()
        if not len(tasks):
            return {}
        return {int(k): int(n) for k, n in tasks[tasks["status"] == "ok"].groupby("client").size().items()}

    # -- tasks ------------------------------------------------------------------------
    def _fill(self, rows: list[dict]) -> None:
        """Submit tasks on the newest version until K are in flight."""
        while len(self.dispatch.pending) < self.k:
            busy = {k for k, _ in self.dispatch.pending.values()}
            k = next_client(self.ctx.config, self.task, busy, self.folded)
            if k is None:
                return
            if not self._submit(self.task, k, 0, rows):
                return
            self.task += 1

    def _submit(self, task: int, k: int, attempt: int, rows: list[dict], avoid: str = "") -> bool:
        late = self.ctx.submit(self.dispatch, k, attempt, self.assignments[k], index=task,
                               r=self.fold.version, avoid=avoid)
        rows += late
        return not late

    def _arrived(self, fut, k: int, attempt: int) -> list[dict]:
        """The row(s) of a task that finished or failed (a retry may be submitted)."""
        task, version = self.dispatch.forget(fut)
        submitted = self.dispatch.submitted_at.get(fut, time.time())

        def fold_in(client: int, res: dict) -> tuple:
            arrival = Arrival(client, version, res["delta"], max(1, res["num_examples"]),
                              res["batch_stats"], res["bn_moments"], res["algorithm_upload"])
            self.log.write(arrival)  # before it is folded: the log never misses one
            self.compile.add(res.get("compile_spans"))
            verdict = self.fold.arrive(arrival)
            if verdict.status == "ok":
                self.folded[client] = self.folded.get(client, 0) + 1
                self.ctx.tuner.observe_task(time.time() - submitted)
            if self.keep_arrivals:
                self.arrivals.append(arrival)
            return verdict.status, verdict.reason, {"staleness": verdict.staleness}

        row, failed = self.ctx.settle(self.dispatch, fut, k, attempt, self.fold.version, fold_in,
                                      tags={"version": version, "staleness": None})
        out = [row]
        if failed and attempt < self.ctx.config.grid.retries:
            self._submit(task, k, attempt + 1, out, avoid=row["worker"])
        return out

    def _limit(self) -> Optional[float]:
        """The per-task limit (s): ``grid.deadline_s``, or chosen from the accepted tasks'
        turnaround when it is 'auto' (:mod:`fedjax_grid.runner.tuning`); None: none."""
        limit = self.ctx.config.grid.deadline_s
        return self.ctx.tuner.task_deadline() if limit == "auto" else limit

    def _deadline(self) -> Optional[float]:
        limit = self._limit()
        if not limit or not self.dispatch.pending:
            return None
        return min(self.dispatch.submitted_at[f] for f in self.dispatch.pending) + limit

    def _cancel_overdue(self) -> list[dict]:
        limit = self._limit()
        if not limit:
            return []
        return self._cancelled(self.dispatch.overdue(limit),
                               TaskTimeout(f"running longer than grid.deadline_s={limit:g} s"))

    def _cancel_in_flight(self, why: str) -> list[dict]:
        """The tasks in flight when the run ends: cancelled, a ``late`` row each (every
        task submitted has a row; the last checkpoint holds none of them in flight)."""
        return self._cancelled(list(self.dispatch.pending), NotNeeded(why), wait_s=2.0)

    def _cancelled(self, futures, why, wait_s: float = 0.0) -> list[dict]:
        return self.ctx.cancel(self.dispatch, futures, self.fold.version, why,
                               tags_of=lambda fut: {"version": self.dispatch.forget(fut)[1],
                                                    "staleness": None}, wait_s=wait_s)

    def in_flight(self) -> list[list]:
        """``[task, client, attempt, version, worker]`` of every task in flight (the worker
        it runs on, '' while queued): what a checkpoint keeps of them."""
        d = self.dispatch
        if d is None:
            return []
        where = task_workers(d.dask_client, [f.key for f in d.pending], wait_s=2.0)
        return [[d.origin[f][0], int(k), int(a), d.origin[f][1], where.get(f.key, "")]
                for f, (k, a) in d.pending.items()]

    def drop_ahead(self) -> None:
        """Nothing: the tasks in flight belong to the next server update."""

    def close(self) -> None:
        if self.dispatch is not None:
            self.dispatch.cancel(list(self.dispatch.pending))
            self.dispatch.release()
