"""Synchronous rounds (``server.mode='sync'``): a barrier per round, one server step.

One ``step`` is one round ``r`` (0-based; recorded as round ``r + 1``):

1. draw this round's local sets (forming strategy) and sample clients (plus
   ``grid.overcommit`` spares); offline clients get no task;
2. wait (up to ``grid.wait_for_workers_s``) for a healthy worker, broadcast the global
   variables once to each healthy worker, bounded in time, and submit one task per
   client (``RoundDispatch``);
3. collect results as they finish until all are in, the first ``clients_per_round``
   are in (overcommit), or ``grid.deadline_s`` passes; failed tasks and tasks lost with
   a worker are re-submitted while ``grid.retries`` and time remain; stragglers are
   cancelled and recorded ``late``;
4. fold each update into the algorithm's streaming round (``RoundFold``: validation,
   aggregation); with a quorum (``grid.quorum``) apply the server step;
5. re-estimate BatchNorm, evaluate, record, checkpoint (``RunContext.finish_round``).

Stop (``RunContext.should_stop``) during steps 2-3 cancels the round's tasks in flight
and records every task of the round as ``stopped`` (``RoundStopped``): no server update,
the run resumes from the last checkpoint and runs the round again. Pressed after the
server update -- also during the evaluation, which is abandoned at once -- the round is
kept and checkpointed (``evaluation`` 'stopped'; a resume evaluates it first), and a
round launched ahead is cancelled and recorded as ``stopped``.

Overlap (``step(prelaunch=True)``, ``grid.overlap_rounds``): the next round is launched
(steps 1-2) right after this round's server step, so the workers train while the
coordinator does step 5; the next ``step`` collects it. Its clients start from this
step's parameters with BatchNorm statistics not yet re-estimated -- they train with batch
statistics, so their updates are bitwise the same as without overlap.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import numpy as np

from fedjax_grid.experiments.build import sample_clients
from fedjax_grid.failures import NotNeeded, TaskTimeout
from fedjax_grid.federated.round_policies import ROUND_POLICIES
from fedjax_grid.grid.dispatch import RoundDispatch
from fedjax_grid.grid.phases import PhaseClock
from fedjax_grid.hazards import faults as fault_sim
from fedjax_grid.runner.tuning import Settings
from fedjax_grid.runner.context import RoundStopped, StopRequested


@dataclasses.dataclass
class Launch:
    """A round whose tasks are submitted: what collecting it needs."""
    round: int
    t_round: float
    clock: PhaseClock
    deadline: Optional[float]
    assignments: Any
    new_strategy_state: Any
    sampled: Any
    dispatch: RoundDispatch
    task_rows: list
    settings: Settings


@ROUND_POLICIES.register("sync")
class SyncRounds:
    """Rounds with a barrier: FedAvg / FedOpt / FedProx on the grid (see the module)."""

    def __init__(self, ctx):
        self.ctx = ctx
        #: a round launched ahead (``step(prelaunch=True)``), collected by the next step
        self.ahead: Optional[Launch] = None
        self._fold_s, self._train_s = 0.0, []

    def step(self, prelaunch: bool = False) -> dict:
        """One round: dispatch and collect, then the server side; its rounds-table row."""
        ctx, c = self.ctx, self.ctx.config
        ctx.start_clock()
        launch = self._take_launch()
        dispatch, clock = launch.dispatch, launch.clock
        target = min(c.clients_per_round, len(launch.sampled))
        fold = ctx.exp.algorithm.begin(ctx.state)
        self._fold_s, self._train_s, self._arrivals = 0.0, [], []
        collected: list[dict] = []
        try:
            self._collect(launch, fold, target, collected)
        except StopRequested:
            raise self._stopped(launch, launch.task_rows + collected) from None
        task_rows = launch.task_rows + collected
        dispatch.release()
        clock.lap("wait")
        clock.move(self._fold_s, "wait", "fold")
        ctx.strategy_state = launch.new_strategy_state
        ctx.tuner.observe_round(self._arrivals)
        quorum = len(fold.accepted) >= max(1, int(np.ceil(launch.settings.quorum * target)))
        if quorum:
            # 'aggregate': clients start from the mean statistics; 'local': clients keep
            # their own, and the mean serves the global model's evaluation only.
            ctx.state, _ = fold.finish()
            clock.lap("server")
        if prelaunch and not ctx.stop_requested():
            self._prelaunch(ctx.round + 1)
            clock.lap("launch")
        if quorum:
            ctx.state = ctx.recalibrated(ctx.state)
            clock.lap("bn")
        ctx.round += 1
        row = ctx.finish_round(task_rows, t_start=launch.t_round, sampled=len(launch.sampled),
                               quorum=quorum, sent=dispatch.bytes_sent,
                               received=dispatch.bytes_received, clock=clock)
        ctx.profile.append({"round": ctx.round, **clock.seconds,
                            "train_s": float(np.mean(self._train_s)) if self._train_s else np.nan,
                            "tasks": len(self._train_s)})
        return row

    # -- launching ---------------------------------------------------------------------
    def _launch(self, r: int) -> Launch:
        """Start round ``r``: local sets, sampling, broadcast, client tasks submitted."""
        ctx, c = self.ctx, self.ctx.config
        ctx.healthy_workers()  # waits up to grid.wait_for_workers_s for a healthy worker
        settings = ctx.round_settings()  # the config's, or chosen from the grid ('auto')
        ctx.tuner.note(r + 1, settings)
        t_round, clock = time.time(), PhaseClock()
        deadline = t_round + settings.deadline_s if settings.deadline_s else None
        assignments, new_strategy_state = ctx.forming(r)
        sampled = sample_clients(c, r, settings.overcommit)
        dispatch = RoundDispatch(ctx.grid.client, ctx.broadcast.value(ctx.global_variables, r),
                                 run_id=ctx.run_id, round_=r,
                                 workers=lambda: ctx.healthy_workers(deadline), deadline=deadline)
        ctx.note_workers()
        clock.lap("forming")
        task_rows: list[dict] = []
        launch = Launch(r, t_round, clock, deadline, assignments, new_strategy_state, sampled,
                        dispatch, task_rows, settings)
        try:
            for k in sampled:
                if fault_sim.is_offline(c.faults, c.seed, r, int(k)):
                    task_rows.append(ctx.task_row(r, k, 0, "offline",
                                                  reason="client offline (simulated availability)"))
                else:
                    task_rows += ctx.submit(dispatch, int(k), 0, assignments[k], index=r, r=r,
                                            why="before the deadline")
        except StopRequested:
            raise self._stopped(launch, task_rows) from None
        clock.lap("submit")
        clock.move(dispatch.broadcast_s, "submit", "broadcast")
        return launch

    def _prelaunch(self, r: int) -> None:
        """Launch round ``r`` (the next one) now, while this one's BatchNorm re-estimation,
        evaluation, records and checkpoint run on the coordinator (see the module). Skipped
        when no healthy worker is connected right now; any error while launching only drops
        the launch (this round's records and checkpoint come first; the next ``step``
        launches the round again and meets the error there)."""
        try:
            if self.ctx.any_healthy_now():
                self.ahead = self._launch(r)
        except Exception:  # noqa: BLE001 - see above: never lose this round to the next one
            self.ahead = None

    def drop_ahead(self) -> None:
        """Cancel the tasks of a round launched ahead that will not run."""
        launch, self.ahead = self.ahead, None
        if launch is not None:
            launch.dispatch.cancel_pending()
            launch.dispatch.release()

    def close(self) -> None:
        self.drop_ahead()

    # -- Stop --------------------------------------------------------------------------
    def _stopped(self, launch: Launch, rows: list[dict]) -> RoundStopped:
        """Cancel ``launch``'s tasks in flight, record all its tasks (``rows``: those done)
        as ``stopped``; the exception that ends the run."""
        ctx, round_ = self.ctx, launch.round + 1
        out = ctx.stopped_rows(rows, round_)
        out += ctx.stop_in_flight(launch.dispatch, list(launch.dispatch.pending), round_)
        launch.dispatch.release()
        ctx.record_stop(out)
        return RoundStopped(round_, len(out))

    def stop(self) -> int:
        """Stop between rounds: a round launched ahead is cancelled and its tasks recorded
        as ``stopped``; the number of task rows recorded."""
        launch, self.ahead = self.ahead, None
        if launch is None:
            return 0
        return self._stopped(launch, list(launch.task_rows)).tasks

    def _take_launch(self) -> Launch:
        """This round's launch: the one made ahead when it is this round's, else a new one."""
        if self.ahead is not None and self.ahead.round == self.ctx.round:
            launch, self.ahead = self.ahead, None
            return launch
        self.drop_ahead()
        return self._launch(self.ctx.round)

    # -- collecting --------------------------------------------------------------------
    def _collect(self, launch: Launch, fold, target: int, rows: list[dict]) -> None:
        """Fold finished updates into ``fold`` until all are in, the overcommit quota is
        met or the deadline passes; re-submit failed tasks while retries and time remain;
        cancel stragglers. Appends the task rows to ``rows``; ``StopRequested`` when Stop
        is pressed meanwhile (``rows`` then holds the tasks done so far)."""
        ctx, g = self.ctx, self.ctx.config.grid
        dispatch, deadline, r = launch.dispatch, launch.deadline, launch.round
        quota_met = (lambda: len(fold.accepted) >= target) if launch.settings.overcommit > 0 \
            else (lambda: False)

        def fold_in(k: int, res: dict) -> tuple:
            if quota_met():
                return "late", NotNeeded("finished after the overcommit quota was met").reason, {}
            t_fold = time.perf_counter()
            reason = fold.add_delta(res["delta"], max(1, res["num_examples"]), k,
                                    batch_stats=res["batch_stats"], bn_moments=res["bn_moments"],
                                    upload=res["algorithm_upload"])
            self._fold_s += time.perf_counter() - t_fold
            self._train_s.append(float(res.get("train_s", np.nan)))
            if reason is None:
                self._arrivals.append(time.time() - launch.t_round)
            return ("ok" if reason is None else "rejected"), reason, {}

        for fut, k, attempt in dispatch.completed(
                deadline, stop=lambda: quota_met() or ctx.stop_requested()):
            row, failed = ctx.settle(dispatch, fut, k, attempt, r, fold_in)
            rows.append(row)
            if failed and attempt < g.retries and (deadline is None or time.time() < deadline):
                rows += ctx.submit(dispatch, k, attempt + 1, launch.assignments[k], index=r, r=r,
                                   avoid=row["worker"], why="before the deadline")
        if ctx.stop_requested():
            raise StopRequested()
        if dispatch.pending:
            rows += ctx.cancel(dispatch, list(dispatch.pending), r,
                               TaskTimeout("past the round deadline") if deadline else
                               NotNeeded("still running when the overcommit quota was met"))
