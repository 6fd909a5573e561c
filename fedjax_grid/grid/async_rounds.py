"""The asynchronous round policy (``server.mode='async'``): FedBuff on the grid.

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
offline at ``t``; it trains on that client's local set of the version being built
(the forming strategy re-draws local sets once per version, as once per round in
synchronous mode). A failed task is re-submitted (same task number, attempt + 1) on
the newest version while ``grid.retries`` allow; a task running longer than
``grid.deadline_s`` is cancelled and recorded ``late``.

Determinism and resume (the guarantee): the server state is a pure function of the
ordered arrival log (``fedbuff.replay``); which arrivals happen in which order depends
on the desktops' timing and is recorded in ``tasks.csv`` (one row per arrival, in
order, with ``version`` and ``staleness``). A checkpoint is written at every server
update, when the buffer is empty; it holds the version, the task counter and the
tasks then in flight. A resumed run records those tasks as ``dropped`` (their results
are lost with the old coordinator) and continues from the checkpointed version with
new task numbers: it is a valid continuation, not a bitwise replay of the interrupted
run (which would need the interrupted run's arrival timing).
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np

from fedjax_grid.experiments.build import forming_rng
from fedjax_grid.federated.fedbuff import Arrival, AsyncFold
from fedjax_grid.grid import faults as fault_sim
from fedjax_grid.grid.dispatch import ResultLost, VersionedDispatch

#: Seed stream of the asynchronous client draws (apart from sampling's 7, forming's 11).
_DRAW = 17


def concurrency(cfg) -> int:
    """K: tasks in flight (default: training.clients_per_round)."""
    return int(cfg.server.concurrency or cfg.clients_per_round)


def buffer_size(cfg) -> int:
    """M: deltas per server update (default: max(1, K // 2))."""
    return int(cfg.server.buffer_size or max(1, concurrency(cfg) // 2))


def next_client(cfg, task: int, busy: set) -> Optional[int]:
    """The client task number ``task`` trains (None: every client is busy or offline)."""
    free = [k for k in range(cfg.partition.num_clients)
            if k not in busy and not fault_sim.is_offline(cfg.faults, cfg.seed, task, k)]
    if not free:
        return None
    return int(free[np.random.default_rng([cfg.seed, _DRAW, task]).integers(len(free))])


class AsyncRounds:
    """FedBuff over a ``FederatedRun``'s grid, records and checkpoints (see the module)."""

    def __init__(self, run, keep_arrivals: bool = False):
        self.run = run
        cfg = run.config
        self.k, self.m = concurrency(cfg), buffer_size(cfg)
        self.fold: Optional[AsyncFold] = None
        self.dispatch: Optional[VersionedDispatch] = None
        self.task = int(run.restored_async.get("task", 0))
        self.assignments = None
        #: every arrival in order, with its delta (``fedbuff.replay`` input); tests only
        self.keep_arrivals = keep_arrivals
        self.arrivals: list[Arrival] = []
        self._t_version = None

    # -- one server update -------------------------------------------------------
    def step(self) -> dict:
        run, cfg = self.run, self.run.config
        if run.t0 is None:
            run.t0 = time.time()
        rows = self._begin() if self.fold is None else []
        v = self.fold.version
        t_start = self._t_version or time.time()
        self.assignments, strategy_state = run.strategy.apply(
            run.strategy_state, forming_rng(cfg.seed, v), v)
        sent0, received0 = self.dispatch.bytes_sent, self.dispatch.bytes_received
        self._fill(rows)
        while self.fold.version == v:
            if not self.dispatch.pending:
                run.healthy_workers()  # NoWorkersError after grid.wait_for_workers_s
                time.sleep(0.2)
                self._fill(rows)
                continue
            for fut, k, attempt in self.dispatch.completed(self._deadline(),
                                                           stop=lambda: self.fold.version != v):
                rows += self._arrived(fut, k, attempt)
                if self.fold.version != v:
                    break  # one server update per step: later arrivals wait for the next
                self._fill(rows)
            rows += self._cancel_overdue()
        run.state, run.strategy_state, run.round = self.fold.state, strategy_state, self.fold.version
        self.dispatch.set_version(run.round, run.broadcast_value(run.global_variables, run.round))
        if not run.done:
            self._fill(rows)  # the next version's tasks train while this one is evaluated
        return self._finish_version(rows, t_start, sent0, received0)

    def _begin(self) -> list[dict]:
        """The fold and dispatch of this process; rows of tasks lost by a resume."""
        run, s = self.run, self.run.config.server
        self.fold = AsyncFold(run.algorithm, run.state, buffer_size=self.m, staleness=s.staleness,
                              max_staleness=s.max_staleness, on_flush=run.recalibrated)
        self.dispatch = VersionedDispatch(run.grid.client, run_id=run.run_id,
                                          workers=lambda: run.healthy_workers())
        self.dispatch.set_version(self.fold.version,
                                  run.broadcast_value(run.global_variables, self.fold.version))
        now = time.time()
        rows = []
        for task, k, attempt, version in run.restored_async.get("in_flight", []):
            row = run._row(self.fold.version, k, attempt, "dropped", None, (now, now), run.t0,
                           reason=f"task {task} was in flight when the coordinator stopped; "
                                  "its result is lost (resume)")
            rows.append(dict(row, version=int(version), staleness=None))
        return rows

    def _finish_version(self, rows: list[dict], t_start: float, sent0: int, received0: int) -> dict:
        run, cfg = self.run, self.run.config
        evaluated = (run.round % cfg.training.eval_every == 0) or run.done
        metrics = run.evaluate() if evaluated else {}
        for t in rows:
            t["round"] = run.round  # the server update the arrival was folded into (or not)
            run.records.add_task(t)
        now = time.time()
        self._t_version = now
        row = {"round": run.round, "global_loss": float(metrics.get("loss", np.nan)),
               "global_accuracy": float(metrics.get("accuracy", np.nan)),
               "logit_spread": metrics.get("logit_spread", np.nan),
               "logit_spread_train": metrics.get("logit_spread_train", np.nan),
               "bn_collapse": metrics.get("bn_collapse"),
               "round_time_s": now - t_start, "elapsed_s": now - run.t0,
               "clients_sampled": len({t["client"] for t in rows}),
               **run.records.task_counts(run.round), "quorum": True,
               "bytes_sent": int(self.dispatch.bytes_sent - sent0),
               "bytes_received": int(self.dispatch.bytes_received - received0)}
        run.records.add_round(row)
        run._checkpoint({"async": {"task": self.task, "in_flight": self._in_flight_list()}})
        return row

    # -- tasks ------------------------------------------------------------------------
    def _fill(self, rows: list[dict]) -> None:
        """Submit tasks on the newest version until K are in flight."""
        while len(self.dispatch.pending) < self.k:
            busy = {k for k, _ in self.dispatch.pending.values()}
            k = next_client(self.run.config, self.task, busy)
            if k is None:
                return
            if not self._submit(self.task, k, 0, rows):
                return
            self.task += 1

    def _submit(self, task: int, k: int, attempt: int, rows: list[dict], avoid: str = "") -> bool:
        run = self.run
        indices = self.assignments[k]
        shipped = None
        if run.config.data.mode == "shipped":
            batch = run.train.__getitems__(indices)
            shipped = {"images": batch["image"], "labels": batch["label"]}
        fut = self.dispatch.submit_task(task, k, attempt, run._task_spec(task, k, attempt, indices),
                                        shipped, avoid=avoid)
        if fut is None:
            now = time.time()
            rows.append(run._row(self.fold.version, k, attempt, "late", None, (now, now), run.t0,
                                 reason="no responsive worker took the global weights in time"))
            return False
        return True

    def _arrived(self, fut, k: int, attempt: int) -> list[dict]:
        """The row(s) of a task that finished or failed (a retry may be submitted)."""
        run, d = self.run, self.dispatch
        task, version = d.forget(fut)
        res, finished = None, fut.status == "finished"  # (result() releases the future)
        if finished:
            try:
                res = d.result(fut)
            except ResultLost:
                finished = False  # its worker went away holding the result: failed, retried
        if not finished:
            row = dict(run._failed_row(d, fut, k, attempt), version=version, staleness=None)
            out = [row]
            if attempt < run.config.grid.retries:
                self._submit(task, k, attempt + 1, out, avoid=row["worker"])
            return out
        if res is not None:
            run.note_held(k, res)
        if res is None:
            row = run._row(self.fold.version, k, attempt, "late", None,
                           (d.submitted_at[fut], time.time()), run.t0,
                           reason="result not fetched in time (worker unresponsive)")
            run.ledger.record(row["worker"], "late")
            return [dict(row, version=version, staleness=None, bytes_in=d.task_bytes[fut])]
        arrival = Arrival(k, version, res["delta"], max(1, res["num_examples"]),
                          res["batch_stats"], res["bn_moments"])
        verdict = self.fold.arrive(arrival)
        if self.keep_arrivals:
            self.arrivals.append(arrival)
        run._keep_client_bn(verdict.status, k, res)
        row = run._row(self.fold.version, k, attempt, verdict.status, res, None, run.t0,
                       reason=verdict.reason)
        run.ledger.record(row["worker"], "rejected" if verdict.status == "rejected" else "ok")
        return [dict(row, version=version, staleness=verdict.staleness,
                     bytes_in=d.task_bytes[fut],
                     bytes_out=res["bytes_out"])]

    def _deadline(self) -> Optional[float]:
        limit = self.run.config.grid.deadline_s
        if not limit or not self.dispatch.pending:
            return None
        return min(self.dispatch.submitted_at[f] for f in self.dispatch.pending) + limit

    def _cancel_overdue(self) -> list[dict]:
        run = self.run
        limit = run.config.grid.deadline_s
        if not limit:
            return []
        rows, now = [], time.time()
        for fut, k, attempt, submitted in self.dispatch.cancel(self.dispatch.overdue(limit)):
            _, version = self.dispatch.forget(fut)
            row = run._row(self.fold.version, k, attempt, "late", None, (submitted, now), run.t0,
                           reason=f"running longer than grid.deadline_s={limit:g} s")
            run.ledger.record(row["worker"], "late")
            rows.append(dict(row, version=version, staleness=None,
                             bytes_in=self.dispatch.task_bytes[fut]))
        return rows

    def _in_flight_list(self) -> list[list[int]]:
        d = self.dispatch
        return [[d.origin[f][0], int(k), int(a), d.origin[f][1]] for f, (k, a) in d.pending.items()]

    def close(self) -> None:
        if self.dispatch is not None:
            self.dispatch.cancel(list(self.dispatch.pending))
            self.dispatch.release()
