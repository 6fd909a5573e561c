"""The run context: everything a round needs, in one object every round policy uses alike.

A :class:`RunContext` holds the state of one run and the operations a round is made of;
a round policy (:mod:`fedjax_grid.runner.policies`) decides *when* to call them:

- what was built (``exp``: data, forming strategy, model, hyper-parameters, algorithm)
  and the server state (``state``, ``strategy_state``, ``round``);
- the grid: ``grid`` (a ``GridHandle``), ``ledger`` (host reliability,
  ``grid.health``), ``healthy_workers``, ``note_workers``;
- the per-client state store (``clients``: BatchNorm statistics, codec and algorithm
  state, broadcast versions) and the broadcast (``broadcast``);
- task specs and submission (``task_spec``, ``submit``), and what a finished, failed or
  cancelled task becomes (``settle``, ``failed_row``, ``cancel``): one task row each, with
  the worker it ran on, its bytes, and its outcome counted in the ledger;
- evaluation and BatchNorm re-estimation (``evaluate``, ``recalibrated``);
- records and checkpoints (``finish_round``, ``checkpoint``, ``restore``);
- Stop (``should_stop``, ``stop_requested``): waits inside a round end early with
  :class:`StopRequested`; the policy turns the round's tasks into ``stopped`` rows
  (``stopped_rows``, ``stop_in_flight``) and ``record_stop`` adds them to the records
  and to the last checkpoint, so the run resumes from there with them on record; the
  evaluation after a server update is abandoned at once (``evaluate_stoppable``), the
  round kept with ``evaluation`` 'stopped', and a resume evaluates it first
  (``evaluate_pending``);
- compilation the round waited for (``compile_s`` of its row: the coordinator's own,
  measured by ``training.compile_meter``, plus the longest of its tasks').

Every random draw derives from (seed, stream, round or task, client, attempt); a resumed
run restores ``state``, ``strategy_state``, ``records``, ``clients`` and the broadcast
chain from the last checkpoint, so it continues exactly where the interrupted one was.
"""
from __future__ import annotations

import dataclasses
import pathlib
import secrets
import time
from typing import Callable, Optional

import numpy as np

from fedjax_grid import version
from fedjax_grid.experiments.build import forming_rng
from fedjax_grid.failures import Failed, Late, NoWorker, ResultLost, StaleCopy, TaskTimeout, WorkerLost
from fedjax_grid.federated.client_algorithms import local_run
from fedjax_grid.grid.dispatch import check_connected, failure_of, task_workers
from fedjax_grid.grid.health import SETUP_S_PER_WORKER, NoWorkersError, WorkerLedger, wait_for_healthy
from fedjax_grid.grid.records import Records
from fedjax_grid.hazards import faults as fault_sim
from fedjax_grid.hazards.links import link_of
from fedjax_grid.runner import evaluation
from fedjax_grid.runner.broadcast import Broadcast
from fedjax_grid.runner.clients import ClientStates
from fedjax_grid.runner.rows import eval_columns, round_row, task_row
from fedjax_grid.runner.stall import RunStalled, stall_message, stalled_rounds
from fedjax_grid.runner.stoppable import Abandoned, run_stoppable
from fedjax_grid.runner.tuning import GridTuner, Settings, auto_settings, reliability, stragglers
from fedjax_grid.training.compile_meter import compile_seconds

#: ``fold(client, result) -> (status, reason, extra row columns)``: what a policy does with
#: a finished task's result (fold it into its aggregate, or not).
Fold = Callable[[int, dict], tuple]


class StopRequested(Exception):
    """Stop was pressed while the round waited (for workers, results): the policy cancels
    its tasks in flight and records the round as stopped."""


class RoundStopped(Exception):
    """The round in progress was stopped and recorded (its tasks ``stopped``); the state
    is the last checkpoint's. ``round``: the round (from 1) that was stopped."""

    def __init__(self, round_: int, tasks: int):
        super().__init__(f"stopped during round {round_} ({tasks} task(s) recorded as stopped)")
        self.round, self.tasks = int(round_), int(tasks)


class RunContext:
    """The state and operations of one federated run (see the module docstring)."""

    def __init__(self, config, exp, *, out_dir, notify: Callable[[str], None]):
        self.config, self.exp = config, exp
        self.out_dir = pathlib.Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.notify = notify
        self.run_id = secrets.token_hex(4)  # keeps task keys of concurrent runs apart
        self.grid = None
        self.ledger = self.new_ledger()
        self.records = Records()
        self.clients = ClientStates()
        self.broadcast = Broadcast(config, self.run_id, self.clients)
        self.state, self.strategy_state = exp.initial_state()
        self.round = 0
        self.t0: Optional[float] = None  # wall-clock start of the run (seconds since epoch)
        self.worker_names: dict[str, str] = {}
        #: synchronous rounds: seconds per phase on the coordinator (grid.phases), per round
        self.profile: list[dict] = []
        #: the meta of the checkpoint this run resumed from ({} for a new run)
        self.restored: dict = {}
        #: turnaround history and chosen settings ('auto' grid settings, runner.tuning)
        self.tuner = GridTuner()
        #: () -> bool: Stop was pressed (``FederatedRun.run(should_stop=...)``)
        self.should_stop: Callable[[], bool] = lambda: False
        self._compiled: Optional[float] = None  # compile_seconds() at the last round's end
        self._eval_compile_s = 0.0  # evaluations' compilation (their own thread) this round
        self._written: dict = {}  # file -> digest of what save_records last wrote there

    def new_ledger(self, rows=()) -> WorkerLedger:
        return WorkerLedger(version.__version__, self.config.grid.quarantine_after,
                            notify=lambda m: self.notify(m), rows=rows)

    @property
    def global_variables(self) -> dict:
        """``{'params': ..., ['batch_stats': ...]}`` of the server state."""
        out = {"params": self.state.params}
        if self.state.batch_stats is not None:
            out["batch_stats"] = self.state.batch_stats
        return out

    @property
    def done(self) -> bool:
        return self.round >= self.config.training.rounds

    def start_clock(self) -> None:
        if self.t0 is None:
            self.t0 = time.time()
        if self._compiled is None:
            self._compiled = compile_seconds()

    def stop_requested(self) -> bool:
        """Whether Stop was pressed."""
        return bool(self.should_stop())

    def check_stop(self) -> None:
        """Raise ``StopRequested`` when Stop was pressed."""
        if self.stop_requested():
            raise StopRequested()

    def forming(self, r: int) -> tuple:
        """``(assignments, next forming state)``: the local sets of round (version) ``r``."""
        return self.exp.strategy.apply(self.strategy_state, forming_rng(self.config.seed, r), r)

    # -- the grid ----------------------------------------------------------------------
    def note_workers(self) -> dict:
        """The grid's workers now (address -> info); remembers their names."""
        from fedjax_grid.grid.tasks import worker_label
        workers = self.grid.workers()
        for addr, info in workers.items():
            self.worker_names[addr] = worker_label(info.get("name"), addr)
        return workers

    def healthy_workers(self, deadline: Optional[float] = None) -> list[str]:
        """Addresses of the healthy workers (see ``grid.health``), waiting for one to
        connect up to ``grid.wait_for_workers_s`` seconds (+ ``SETUP_S_PER_WORKER`` per
        connected worker while workers are still setting up) -- or, inside a round with a
        deadline, until the deadline (then ``[]``). After the grace period without
        any: ``NoWorkersError`` (the last checkpoint stays resumable)."""
        grace = self.config.grid.wait_for_workers_s

        def check() -> None:
            check_connected(self.grid.client, self.round)
            self.check_stop()
        if deadline is not None and deadline - time.time() < grace:
            try:
                return wait_for_healthy(self.ledger, self.grid.client,
                                        grace_s=max(0.0, deadline - time.time()), t0=self.t0,
                                        notify=self._health_notify, check=check)
            except NoWorkersError:
                return []
        return wait_for_healthy(self.ledger, self.grid.client, grace_s=grace, t0=self.t0,
                                notify=self._health_notify, check=check,
                                setup_s_per_worker=SETUP_S_PER_WORKER)

    def _health_notify(self, message: str) -> None:
        """``notify``, except once Stop was pressed: a stopping run says only that."""
        if not self.stop_requested():
            self.notify(message)

    def any_healthy_now(self) -> bool:
        """Whether a healthy worker is connected right now (no waiting, no message)."""
        return bool(wait_for_healthy(self.ledger, self.grid.client, grace_s=0.0, t0=self.t0,
                                     notify=lambda m: None))

    def round_settings(self) -> Settings:
        """This round's deadline, quorum and overcommit: the config's, with those set to
        'auto' chosen from the grid's history (:mod:`fedjax_grid.runner.tuning`)."""
        g, c = self.config.grid, self.config
        auto = tuple(k for k in ("deadline_s", "quorum", "overcommit") if getattr(g, k) == "auto")
        fixed = Settings(None if g.deadline_s == "auto" else g.deadline_s,
                         0.5 if g.quorum == "auto" else g.quorum,
                         0 if g.overcommit == "auto" else g.overcommit, auto=auto)
        if not auto:
            return fixed
        from fedjax_grid.grid.health import worker_view
        view = worker_view(self.grid.client)
        healthy = self.ledger.healthy(view)
        slots = sum(int(view.get(a, {}).get("nthreads", 1)) for a in healthy)
        tasks = self.records.tasks()
        ok = tasks[(tasks["status"] == "ok") & tasks["worker"].isin(healthy)]
        times = {w: list(g_["duration_s"].tail(20)) for w, g_ in ok.groupby("worker")}
        return auto_settings(self.tuner.history(), n=c.clients_per_round,
                             num_clients=c.partition.num_clients,
                             rho=reliability(tasks, healthy),
                             slow=stragglers(times), fixed=fixed, slots=slots)

    # -- tasks ---------------------------------------------------------------------------
    def task_spec(self, index: int, k: int, attempt: int, indices: np.ndarray) -> dict:
        """The spec of client ``k``'s task (``grid.tasks.client_update``): ``index`` is the
        0-based round (the task number in asynchronous rounds) that keys its randomness."""
        c = self.config
        plan = fault_sim.fault_plan(c.faults, c.seed, index, k, attempt,
                                    num_clients=c.partition.num_clients)
        if c.data.mode == "shipped":
            data = {"mode": "shipped"}  # the examples travel beside the spec (``submit``)
        else:
            data = {"mode": "resident", "source": c.data.source, "path": c.data.path,
                    "data_dir": c.data.data_dir,
                    "options": tuple(sorted(self.exp.data.source_options.items())),
                    "indices": np.asarray(indices, np.int64)}
        own_bn = self.clients.get("batch_stats", k) if c.server.bn_mode == "local" else None
        payload = self.exp.algorithm.client.client_payload(self.state.algorithm,
                                                           self.clients.get("algorithm", k))
        link = None if c.faults.link.name == "none" else link_of(c.faults.link, c.seed, int(k)).to_dict()
        return {"codec": c.server.codec.model_dump(), "codec_state": self.clients.get("codec", k),
                "download_nbytes": self.broadcast.download_nbytes(k),
                "link": link, "version": version.__version__, "round": index, "client": int(k),
                "batch_stats": own_bn, "bn_moments": c.server.bn_mode == "pooled",
                "attempt": attempt, "seed": c.seed, "model": self.exp.model_key,
                "hparams": dataclasses.asdict(self.exp.hparams), "mean": self.exp.data.mean,
                "std": self.exp.data.std, "plan": plan.to_dict(), "data": data,
                "algorithm": c.training.algorithm.model_dump(), "algorithm_payload": payload}

    def submit(self, dispatch, k: int, attempt: int, indices, *, index: int, r: int,
               avoid: str = "", why: str = "in time") -> list[dict]:
        """Submit client ``k``'s task (randomness ``index``), with its examples when the data
        is shipped (not to ``avoid``, the worker where its last attempt failed, when others
        are ready). Returns ``[]``, or the task's ``late`` row (round ``r``, ``NoWorker``)
        when no worker took the weights ``why`` (e.g. 'before the deadline')."""
        shipped = None
        if self.config.data.mode == "shipped":
            batch = self.exp.data.train.__getitems__(indices)
            shipped = {"images": batch["image"], "labels": batch["label"]}
        if dispatch.submit(k, attempt, self.task_spec(index, k, attempt, indices), shipped,
                           avoid=avoid):
            return []
        now = time.time()
        return [self.task_row(r, k, attempt, "late", span=(now, now), reason=NoWorker(
            f"no responsive worker took the global weights {why}").reason)]

    def task_row(self, r: int, k: int, attempt: int, status: str, **kw) -> dict:
        """A task row of this run (:func:`fedjax_grid.runner.rows.task_row`); a ``worker``
        given without its name gets the name it was seen with."""
        if kw.get("worker") and not kw.get("worker_name"):
            kw["worker_name"] = self.worker_names.get(kw["worker"], "")
        return task_row(self.config, r, k, attempt, status, t0=self.t0, **kw)

    def settle(self, dispatch, fut, k: int, attempt: int, r: int, fold: Fold,
               tags: Optional[dict] = None) -> tuple[dict, bool]:
        """``(row, failed)`` of a task that completed: its result fetched and handed to
        ``fold`` (which decides its status), or -- when it failed, or its result went with
        its worker -- its ``failed`` row (``failed``: it may be retried), or its ``late``
        row when the result could not be fetched in time. An accepted (``ok``) update's
        client states replace the client's old ones. ``tags``: extra columns of the row
        (asynchronous rounds: the version it trained from)."""
        tags = tags or {}
        res, failure = None, None
        if fut.status == "finished":
            try:
                res = dispatch.result(fut)
            except ResultLost as lost:  # its worker went away holding it: failed, may be retried
                failure = lost
            except TaskTimeout as late:  # its worker froze, or its link is too slow: late
                return self.cancelled_row(dispatch, fut, k, attempt, r, tags, late), False
        if res is None:
            return {**self.failed_row(dispatch, fut, k, attempt, r, failure), **tags}, True
        self.broadcast.note_held(k, res)
        res["algorithm_upload"] = self.exp.algorithm.client.upload(
            self.clients.get("algorithm", k), res.get("algorithm_state"), res["delta"],
            local_run(dataclasses.asdict(self.exp.hparams), res["metrics"]))
        status, reason, extra = fold(k, res)
        if status == "ok":
            self.clients.accept(k, res, keep_batch_stats=self.config.server.bn_mode == "local")
        row = {**self.task_row(r, k, attempt, status, res=res, reason=reason or ""), **tags, **extra}
        row["bytes_in"] = dispatch.task_bytes[fut]
        self.ledger.record(row["worker"], "ok" if status == "dropped" else status)
        return row, False

    def failed_row(self, dispatch, fut, k: int, attempt: int, r: int,
                   failure: Optional[Failed] = None) -> dict:
        """The ``failed`` row of a task that raised, lost its worker or its result
        (``failure``: the kind, else read from the future); that worker is given no more
        of this dispatch's tasks when it was lost or is now quarantined."""
        failure = failure or failure_of(fut)
        lost = failure.worker if isinstance(failure, WorkerLost) else ""
        where = lost or task_workers(dispatch.dask_client, [fut.key]).get(fut.key, "")
        fut.release()
        row = self.task_row(r, k, attempt, "failed", span=(dispatch.submitted_at[fut], time.time()),
                            reason=failure.reason, worker=where)
        row["bytes_in"] = dispatch.task_bytes[fut]
        was_quarantined = self.ledger.is_quarantined(where)
        self.ledger.record(where, "failed")
        self.broadcast.forget_worker(where)
        if isinstance(failure, StaleCopy):
            dispatch.ready = []  # a desktop lost its copy: re-broadcast, now with the full model
        if lost or self.ledger.is_quarantined(where):
            dispatch.exclude(where)
        if where and not lost and not was_quarantined and self.ledger.is_quarantined(where):
            dispatch.take_back(where)  # its queued tasks go elsewhere, not to fail there
        return row

    def cancelled_row(self, dispatch, fut, k: int, attempt: int, r: int, tags: dict,
                      why: Late, worker: Optional[str] = None, submitted=None) -> dict:
        """The ``late`` row of a task whose result will not be used (``why``: the kind; its
        worker, looked up unless given, is counted late)."""
        if worker is None:
            worker = task_workers(dispatch.dask_client, [fut.key]).get(fut.key, "")
        span = (dispatch.submitted_at[fut] if submitted is None else submitted, time.time())
        row = {**self.task_row(r, k, attempt, "late", span=span, reason=why.reason, worker=worker),
               **tags, "bytes_in": dispatch.task_bytes[fut]}
        self.ledger.record(worker, "late")
        return row

    def cancel(self, dispatch, futures, r: int, why: Late,
               tags_of: Callable = lambda fut: {}, wait_s: float = 0.0) -> list[dict]:
        """Cancel ``futures`` (pending tasks whose results are no longer wanted, ``why``) and
        return their ``late`` rows, each with the worker it was running on ('' if queued;
        ``wait_s``: how long to wait for the scheduler to place a task just submitted)."""
        running_on = task_workers(dispatch.dask_client, [f.key for f in futures], wait_s=wait_s)
        return [self.cancelled_row(dispatch, fut, k, attempt, r, tags_of(fut), why,
                                   worker=running_on.get(fut.key, ""), submitted=submitted)
                for fut, k, attempt, submitted in dispatch.cancel(futures)]

    # -- Stop ------------------------------------------------------------------------------
    def stopped_rows(self, rows: list[dict], round_: int) -> list[dict]:
        """The task rows of a round that was stopped before its server update, as
        ``stopped`` rows of round ``round_`` (from 1): an update that came back was not
        applied; the reason keeps what the task's outcome had been."""
        out = []
        for t in rows:
            if t["status"] == "dropped":   # lost by an earlier coordinator, or too stale
                out.append({**t, "round": int(round_)})
                continue
            was = t["status"] if t["status"] != "stopped" else ""
            why = t["reason"] if was == "" else (
                f"stopped before round {round_}'s server update; the task was {was}"
                + (": update not applied" if was == "ok" else "")
                + (f" ({t['reason']})" if t.get("reason") else ""))
            out.append({**t, "round": int(round_), "status": "stopped", "reason": why})
        return out

    def stop_in_flight(self, dispatch, futures, round_: int,
                       tags_of: Callable = lambda fut: {}) -> list[dict]:
        """Cancel ``futures`` because the run stops: their ``stopped`` rows of round
        ``round_`` (from 1), each with the worker it was running on ('' if queued). The
        workers are not blamed (no ledger entry); a task that is training stops at its next
        step (``grid.tasks.raise_if_cancelled``)."""
        futures = list(futures)
        running_on = task_workers(dispatch.dask_client, [f.key for f in futures])
        rows = []
        for fut, k, attempt, submitted in dispatch.cancel(futures):
            row = self.task_row(round_ - 1, k, attempt, "stopped", span=(submitted, time.time()),
                                worker=running_on.get(fut.key, ""),
                                reason="cancelled in flight: the run was stopped")
            rows.append({**row, **tags_of(fut), "bytes_in": dispatch.task_bytes[fut]})
        return rows

    def record_stop(self, rows: list[dict], extra: Optional[dict] = None) -> None:
        """Add the stopped round's ``rows`` to the records and to the meta of the checkpoint
        the run resumes from (the state after ``self.round`` rounds, written now when there
        is none yet), then write the records. ``extra``: more meta (asynchronous rounds:
        their task counter, nothing in flight)."""
        from fedjax_grid.grid.checkpoint import list_checkpoints, update_meta
        for t in rows:
            self.records.add_task(t)
        self.records.set_workers(self.ledger.table_rows())
        stop = {"stopped": {"round": self.round + 1, "tasks": len(rows), "at": time.time()}}
        found = list_checkpoints(self.ckpt_dir)
        if found:   # the checkpoint a resume starts from (the state after self.round rounds)
            update_meta(found[-1][1], {"records": self.records.to_json_state(), **stop, **(extra or {})})
        else:   # stopped in the first round: the initial state, to resume from
            first = RunContext(self.config, self.exp, out_dir=self.out_dir, notify=self.notify)
            first.records, first.ledger, first.t0 = self.records, self.ledger, self.t0
            first.checkpoint({**stop, **(extra or {})})
        self.save_records()

    # -- the coordinator's computations -------------------------------------------------
    def evaluate(self) -> dict:
        """The global model on the test split (:func:`fedjax_grid.runner.evaluation.evaluate`)."""
        return evaluation.evaluate(self.exp, self.config, self.global_variables)

    def evaluate_stoppable(self) -> Optional[dict]:
        """``evaluate()`` that a Stop abandons (:mod:`fedjax_grid.runner.stoppable`): the
        metrics, or None when Stop was pressed before or during it. Its compilation is
        counted in the round's ``compile_s``."""
        gvars, exp, config = self.global_variables, self.exp, self.config
        try:
            metrics, spent = run_stoppable(
                lambda check: evaluation.evaluate(exp, config, gvars, interrupt=check),
                self.stop_requested)
        except Abandoned:
            return None
        self._eval_compile_s += spent
        return metrics

    def _evaluate_round(self) -> tuple[dict, str]:
        """``(metrics, evaluation)`` of the round just done (``grid.records.EVALUATIONS``):
        due every ``training.eval_every`` rounds and after the last; 'stopped' when Stop
        was pressed before or during it (a resume evaluates it: ``evaluate_pending``)."""
        c = self.config
        if self.round % c.training.eval_every and not self.done:
            return {}, "not due"
        metrics = self.evaluate_stoppable()
        return ({}, "stopped") if metrics is None else (metrics, "done")

    @property
    def evaluation_pending(self) -> bool:
        """The last round's evaluation was stopped (a resume does it first)."""
        row = self.records.round_row(self.round) if self.round else None
        return row is not None and row.get("evaluation") == "stopped"

    def evaluate_pending(self) -> bool:
        """Evaluate the state of the last round when a Stop cut its evaluation, and fill in
        that round's row (``evaluation`` 'on resume'; records and the checkpoint's meta
        rewritten). False when Stop abandons it again; True otherwise."""
        if not self.evaluation_pending:
            return True
        metrics = self.evaluate_stoppable()
        if metrics is None:
            return False
        self._eval_compile_s = 0.0  # not a round's: the row's compile_s stays as recorded
        self.records.update_round(self.round, **eval_columns(metrics), evaluation="on resume")
        from fedjax_grid.grid.checkpoint import list_checkpoints, update_meta
        found = list_checkpoints(self.ckpt_dir)
        if found:
            update_meta(found[-1][1], {"records": self.records.to_json_state()})
        self.save_records()
        return True

    def recalibrated(self, state):
        """``state`` with re-estimated BatchNorm statistics where ``server.bn_mode`` asks
        for it (:func:`fedjax_grid.runner.evaluation.recalibrated`)."""
        return evaluation.recalibrated(self.exp, self.config, state)

    # -- records and checkpoints ---------------------------------------------------------
    def finish_round(self, task_rows: list, *, t_start: float, sampled: int, quorum: bool,
                     sent: int, received: int, clock=None, extra: Optional[dict] = None,
                     charge: Optional[Callable[[float], float]] = None) -> dict:
        """After the server step of round ``self.round``: evaluate (when due), record the
        task rows and the round's row, write the checkpoint (``extra``: more meta, e.g. the
        tasks in flight); ``clock``: a ``PhaseClock`` lapped at 'eval' and 'records'.
        ``charge(own)``: the round's ``compile_s`` given the coordinator's own compile
        seconds (asynchronous rounds, ``runner.compile_time``); default: own plus the
        longest compile among ``task_rows``."""
        # Stop pressed after the server update: the round is kept, its evaluation stopped
        metrics, evaluated = self._evaluate_round()
        if clock is not None:
            clock.lap("eval")
        for t in task_rows:
            self.records.add_task(t)
        row = round_row(self.round, metrics, self.records.task_counts(self.round), t_start=t_start,
                        t0=self.t0, sampled=sampled, quorum=quorum, sent=sent, received=received,
                        compile_s=self._round_compile_s(task_rows, charge),
                        evaluation=evaluated)
        self.records.add_round(row)
        self.checkpoint(extra)
        if clock is not None:
            clock.lap("records")
        self.stop_if_stalled()
        return row

    def _round_compile_s(self, task_rows: list, charge=None) -> float:
        """Compilation the round waited for (s): the coordinator's since the last round
        (this thread and the evaluation's) plus the longest compile among the round's
        tasks -- or ``charge(own)`` when given."""
        now = compile_seconds()
        own, self._compiled = now - (self._compiled if self._compiled is not None else now), now
        own, self._eval_compile_s = own + self._eval_compile_s, 0.0
        if charge is not None:
            return float(charge(own))
        tasks = [t.get("compile_s") for t in task_rows]
        tasks = [float(v) for v in tasks if v is not None and np.isfinite(v)]
        return own + (max(tasks) if tasks else 0.0)

    def stop_if_stalled(self) -> None:
        """``RunStalled`` when the last ``grid.max_rounds_without_update`` rounds applied no
        update (:mod:`fedjax_grid.runner.stall`; called after the round is checkpointed)."""
        n = self.config.grid.max_rounds_without_update
        rounds = self.records.rounds().to_dict("records")
        if stalled_rounds(rounds, n):
            tasks = self.records.tasks()
            rows = tasks[tasks["round"] > self.round - n].to_dict("records")
            raise RunStalled(stall_message(rows, n=n, unit="rounds in a row", done=self.round))

    def save_records(self) -> None:
        """Write the records (and the profile) and the config beside them, atomically."""
        import pandas as pd

        from fedjax_grid.atomic_write import write_if_changed
        self.records.set_workers(self.ledger.table_rows())
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # files that did not change since this run wrote them are not rewritten
        write_if_changed(self.out_dir / "config.json", self.config.to_json(), self._written)
        self.records.save(self.out_dir)
        for name, rows in (("profile.csv", self.profile), ("tuning.csv", self.tuner.rows)):
            if rows:
                write_if_changed(self.out_dir / name, pd.DataFrame(rows).to_csv(index=False),
                                 self._written)
        if self.records.num_tasks:
            write_if_changed(self.out_dir / "participation.csv",
                             self.participation().to_csv(index=False), self._written)

    def participation(self):
        """Tasks run and updates folded per client (:mod:`fedjax_grid.runner.participation`)."""
        from fedjax_grid.runner.participation import participation
        return participation(self.records.tasks(), self.config.partition.num_clients)

    def checkpoint(self, extra: Optional[dict] = None) -> None:
        """Atomic checkpoint of the state after ``self.round`` (``extra``: more meta)."""
        from fedjax_grid.grid.checkpoint import save_checkpoint
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.records.set_workers(self.ledger.table_rows())
        meta = {"fingerprint": self.config.fingerprint(), "round": self.round,
                "records": self.records.to_json_state(), "config": self.config.to_dict(),
                "tuning": self.tuner.state(), **(extra or {})}
        arrays = {"strategy": {k: np.asarray(v) for k, v in self.strategy_state.items()}}
        clients = self.clients.arrays()
        if clients:
            arrays["clients"] = clients
        self.broadcast.checkpoint(arrays, meta)
        save_checkpoint(self.ckpt_dir, self.round, self.state, meta, arrays)
        self.save_records()

    def restore(self) -> None:
        """Continue from the last checkpoint in ``ckpt_dir`` (CheckpointError if none, or
        if it belongs to another experiment)."""
        from fedjax_grid.errors import CheckpointError
        from fedjax_grid.grid.checkpoint import latest_checkpoint, load_checkpoint
        path = latest_checkpoint(self.ckpt_dir)
        if path is None:
            raise CheckpointError(f"--resume: no checkpoint in {str(self.ckpt_dir)!r}")
        tree, meta, arrays = load_checkpoint(path, template=self.state)
        if meta.get("fingerprint") != self.config.fingerprint():
            raise CheckpointError(f"checkpoint {str(path)!r} belongs to another experiment "
                                  "(its config differs beyond rounds/out/grid)")
        self.state, self.round, self.restored = tree, int(meta["round"]), meta
        self.tuner = GridTuner(meta.get("tuning"))
        self.records = Records.from_json_state(meta["records"])
        self.ledger = self.new_ledger(rows=self.records.worker_rows())
        self.strategy_state = _unflatten_state(arrays["strategy"], self.strategy_state)
        self.clients.restore(arrays, meta)
        self.broadcast.restore(arrays, meta, like=self.global_variables)
        rounds = self.records.rounds()
        elapsed = float(rounds["elapsed_s"].iloc[-1]) if len(rounds) else 0.0
        self.t0 = time.time() - elapsed


def _unflatten_state(arrays: dict, like: dict) -> dict:
    """A forming strategy's state read back from a checkpoint, typed like ``like``."""
    out = {}
    for k, v in like.items():
        a = arrays[k]
        out[k] = a if isinstance(v, np.ndarray) else type(v)(a.item() if a.ndim == 0 else a)
    return out
