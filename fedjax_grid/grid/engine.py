"""The federated engine: rounds over real Dask workers.

``FederatedRun(config)`` gets its data, partition strategy, model, algorithm and
initial server state from the builders (``experiments.build``), connects to the
grid, and then runs rounds,
one ``step()`` at a time (notebooks) or all of them with ``run()`` (CLI):

1. draw this round's local sets with the forming strategy and sample clients
   (plus ``grid.overcommit`` spares);
2. wait (up to ``grid.wait_for_workers_s``) until a healthy worker is connected,
   then send the global variables (encoded with ``server.broadcast_codec`` unless
   ``none``) once to each healthy worker, bounded in time
   (``dispatch.bounded_broadcast``; frozen and quarantined desktops are left out,
   see ``grid.health``);
3. submit one ``client_update`` task per available client, with its examples
   (``shipped``) or only its indices (``resident``), restricted to the workers
   that hold the weights;
4. collect results as they finish until all are in, the first
   ``clients_per_round`` are in (overcommit), or the deadline passes; failed
   tasks and tasks lost with a worker are re-submitted while retries and time
   remain; stragglers are cancelled and recorded ``late``;
5. decode each update (``server.codec``; a top-k client's new error-feedback
   residual is kept in ``codec_state`` only when its update is accepted), validate
   it and fold it into a streaming weighted mean (O(model) memory); bad ones are
   recorded ``rejected``;
6. with a quorum, apply the server optimiser; evaluate the global model;
7. record tasks and round, write an atomic checkpoint.

Dask calls live in :class:`~fedjax_grid.grid.dispatch.RoundDispatch` (steps 2-4);
validation, aggregation and the server step are the pure algorithm's
:class:`~fedjax_grid.federated.algorithm.RoundFold` (steps 5-6).

Everything random derives from (seed, round, client, attempt), and updates are
summed in float64 on the coordinator, so a resumed run reaches the same final
parameters as an uninterrupted one.

Round numbers: for people and in every record, rounds count from 1 -- the row
``round = k`` is the k-th round, ``run.round`` is the number of rounds done, and
the checkpoint ``ckpt-00000k.npz`` holds the state after round k. Internally the
0-based index ``r = k - 1`` keys the randomness (forming, sampling, faults) and
the Dask task keys.

Start-up (data, model, grid, the first round that compiles the model on the
workers) is timed by :class:`~fedjax_grid.grid.stages.Stages`; pass
``on_stage=callback`` to see each stage as it begins and ends.
"""
from __future__ import annotations

import dataclasses
import functools
import pathlib
import re
import secrets
import sys
import time
from typing import Any, Callable, Optional

import numpy as np

import fedjax_grid
from fedjax_grid.errors import UserError
from fedjax_grid.experiments.build import (build_data, build_experiment, forming_rng,
                                           partition_strategy, sample_clients)
from fedjax_grid.experiments.config import ExperimentConfig
from fedjax_grid.grid import faults as fault_sim
from fedjax_grid.grid.links import link_of
from fedjax_grid.grid.dispatch import (GridLostError, ResultLost, RoundDispatch,  # noqa: F401
                                       check_connected, tree_nbytes)
from fedjax_grid.grid.phases import PhaseClock
from fedjax_grid.grid.health import NoWorkersError, WorkerLedger, wait_for_healthy  # noqa: F401
from fedjax_grid.training.compile_cache import default_cache_dir, enable_persistent_cache


#: Seed stream of the broadcast codec's randomness (int8 rounding of the global model).
_BROADCAST_STREAM = 29


def warn_stderr(message: str) -> None:
    """Default ``notify``: one line ``warning: ...`` on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class _Launch:
    """A synchronous round whose tasks are submitted: what collecting it needs."""
    round: int
    t_round: float
    clock: PhaseClock
    deadline: Optional[float]
    assignments: Any
    new_strategy_state: Any
    sampled: Any
    dispatch: RoundDispatch
    task_rows: list


class FederatedRun:
    """A federated experiment on a Dask grid, run round by round.

    config: a validated ``ExperimentConfig``. out_dir: where records, checkpoints
    and plots go (default ``config.out_dir`` or ``runs/<name>``). resume: continue
    from the last checkpoint in ``out_dir/checkpoints``. grid: an already open
    ``GridHandle`` to reuse (else one is opened from ``config.grid`` on ``start``).
    notify: called with one-line messages about the grid (a quarantined worker,
    waiting for workers); default: ``warning: ...`` on stderr.
    on_stage: called with each start-up event (see :mod:`fedjax_grid.grid.stages`).

    ``worker_names`` maps the address of every worker seen to its ``--name``
    ('' when it has none); ``stages.log`` holds the timed start-up stages.
    """

    def __init__(self, config: ExperimentConfig, *, out_dir=None, resume: bool = False,
                 grid=None, notify: Optional[Callable[[str], None]] = None,
                 on_stage: Optional[Callable[[dict], None]] = None):
        from fedjax_grid.grid.records import Records
        from fedjax_grid.grid.runlock import RunFolderLock
        from fedjax_grid.grid.stages import Stages
        self.config = config.validate()
        self.stages = Stages(on_stage)
        self.worker_names: dict[str, str] = {}
        self._first_step = True
        self.out_dir = pathlib.Path(out_dir or config.out_dir or pathlib.Path("runs") / config.name)
        #: Held from ``start()`` (or the first ``step()``) until ``run()`` returns or ``close()``.
        self.lock = RunFolderLock(self.out_dir)
        self.lock.probe()  # another run writes there now: refuse before reading anything
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.grid = grid
        self._own_grid = grid is None
        self.records = Records()
        self.round = 0
        #: bn_mode='local': each client's own BatchNorm statistics (client -> tree).
        self.client_bn: dict[int, dict] = {}
        #: server.codec with error feedback (topk): each logical client's codec state
        #: ({'residual': tree}), kept here between its tasks and checkpointed.
        self.codec_state: dict[int, dict] = {}
        #: server.broadcast='delta': the chain of broadcast steps (compression.chain), the
        #: version each worker's cache and each logical client holds (from task results).
        self.chain = None
        self.worker_versions: dict[str, int] = {}
        self.client_versions: dict[int, int] = {}
        self.run_id = secrets.token_hex(4)  # keeps task keys of concurrent runs apart
        self._async_rounds = None
        self._next_launch: Optional[_Launch] = None  # a round launched ahead (sync, run())
        #: synchronous rounds: seconds per phase on the coordinator (grid.phases), per round
        self.profile: list[dict] = []
        self._fold_s, self._train_s = 0.0, []
        #: server.mode='async': what the last checkpoint says about tasks then in flight.
        self.restored_async: dict = {}
        self.t0: Optional[float] = None  # wall-clock start of the run (seconds since epoch)
        self.notify = notify or warn_stderr
        self.ledger = WorkerLedger(fedjax_grid.__version__, config.grid.quarantine_after,
                                   notify=lambda m: self.notify(m))
        c = self.config
        with self.stages.stage("data", f"loading and partitioning {c.data.source} "
                               f"({c.partition.num_clients} clients, "
                               f"{c.partition.distribution})") as info:
            self.data = build_data(c)
            strategy = partition_strategy(c, np.asarray(self.data.train.labels))
            info["detail"] = f"{len(self.train)} training / {len(self.test_arrays[1])} test images"
        with self.stages.stage("model", f"building {c.model.name} and the server state"):
            enable_persistent_cache(c.grid.compile_cache_dir or default_cache_dir())
            self.exp = build_experiment(c, data=self.data, strategy=strategy)
            self.state, self.strategy_state = self.exp.initial_state()
        if resume:
            self._restore()
        elif self.ckpt_dir.exists() and any(self.ckpt_dir.glob("ckpt-*")):
            raise UserError(f"{str(self.out_dir)!r} already holds checkpoints of a run: pass "
                            "--resume to continue it or choose another --out")

    # -- what the builders made (fedjax_grid.experiments.build) -------------------
    train = property(lambda self: self.data.train, doc="training ImageDataset (D examples)")
    test = property(lambda self: self.data.test, doc="test ImageDataset")
    info = property(lambda self: self.data.info, doc="the source's DatasetInfo")
    test_arrays = property(lambda self: self.data.test_arrays, doc="(images, labels) evaluated")
    mean = property(lambda self: self.data.mean, doc="per-channel mean, pixels in [0, 1]")
    std = property(lambda self: self.data.std, doc="per-channel std, pixels in [0, 1]")
    strategy = property(lambda self: self.exp.strategy, doc="the forming strategy")
    model = property(lambda self: self.exp.model, doc="the Flax module")
    model_key = property(lambda self: self.exp.model_key, doc="hashable model description")
    hparams = property(lambda self: self.exp.hparams, doc="the clients' HParams")
    algorithm = property(lambda self: self.exp.algorithm, doc="the pure federated algorithm")

    # -- grid -----------------------------------------------------------------
    def start(self):
        """Lock the run folder (``RunFolderBusy`` if another run holds it), then open the
        grid (LocalCluster or scheduler) unless one was given."""
        self.lock.acquire()
        if self.grid is None:
            from fedjax_grid.grid.cluster import open_cluster
            g = self.config.grid
            text = (f"starting a LocalCluster of {g.workers} worker processes on {g.host}"
                    if g.scheduler is None else f"connecting to the Dask scheduler {g.scheduler}")
            with self.stages.stage("grid", text) as info:
                self.grid = open_cluster(g, local_directory=str(self.out_dir / "dask"))
                info["detail"] = f"{len(self.note_workers())} workers"
        return self.grid

    def note_workers(self) -> dict:
        """The grid's workers now (address -> info); remembers their names."""
        from fedjax_grid.grid.tasks import worker_label
        workers = self.grid.workers()
        for addr, info in workers.items():
            self.worker_names[addr] = worker_label(info.get("name"), addr)
        return workers

    def close(self) -> None:
        try:
            self.drop_next_round()
            if self._async_rounds is not None:
                self._async_rounds.close()  # tasks still in flight are not needed any more
            if self.grid is not None and self._own_grid:
                self.grid.close()
                self.grid = None
        finally:
            self.lock.release()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def global_variables(self) -> dict:
        out = {"params": self.state.params}
        if self.state.batch_stats is not None:
            out["batch_stats"] = self.state.batch_stats
        return out

    @property
    def done(self) -> bool:
        return self.round >= self.config.training.rounds

    # -- one round --------------------------------------------------------------
    def _task_spec(self, round_: int, client: int, attempt: int, indices: np.ndarray) -> dict:
        c = self.config
        plan = fault_sim.fault_plan(c.faults, c.seed, round_, client, attempt,
                                    num_clients=c.partition.num_clients)
        if c.data.mode == "shipped":
            data = {"mode": "shipped"}  # the examples travel beside the spec (see step)
        else:
            data = {"mode": "resident", "source": c.data.source, "path": c.data.path,
                    "data_dir": c.data.data_dir,
                    "options": tuple(sorted(self.data.source_options.items())),
                    "indices": np.asarray(indices, np.int64)}
        own_bn = self.client_bn.get(int(client)) if c.server.bn_mode == "local" else None
        link = None if c.faults.link.name == "none" else \
            link_of(c.faults.link, c.seed, int(client)).to_dict()
        download = None if self.chain is None else \
            self.chain.download_nbytes(self.client_versions.get(int(client)))
        return {"codec": c.server.codec.model_dump(), "codec_state": self.codec_state.get(int(client)),
                "download_nbytes": download,
                "link": link, "version": fedjax_grid.__version__, "round": round_, "client": int(client),
                "batch_stats": own_bn, "bn_moments": c.server.bn_mode == "pooled",
                "attempt": attempt, "seed": c.seed, "model": self.model_key,
                "hparams": dataclasses.asdict(self.hparams), "mean": self.mean, "std": self.std,
                "plan": plan.to_dict(), "data": data}

    def step(self, prelaunch: bool = False) -> dict:
        """Run one round; return its row of the rounds table (``row['round']`` = rounds done).

        ``prelaunch`` (synchronous rounds): submit the next round's tasks right after this
        round's server step, so the workers train while the coordinator re-estimates
        BatchNorm, evaluates and checkpoints; they stay in flight after ``step`` returns
        and the next ``step`` collects them (``close`` or ``drop_next_round`` cancel them).
        ``run`` does this when ``grid.overlap_rounds`` is on and another round follows."""
        if self.grid is None or not self.lock.held:
            self.start()
        step = functools.partial(self._step, prelaunch=prelaunch) \
            if self.config.server.mode == "sync" else self._async().step
        if not self._first_step:
            return step()
        self._first_step = False
        c = self.config
        with self.stages.stage("first_round", f"round {self.round + 1}/{c.training.rounds}: "
                               "compiling the model on the workers and training") as info:
            row = step()
            info["detail"] = f"{row['clients_ok']}/{row['clients_sampled']} clients ok"
        return row

    def _async(self):
        """The asynchronous (FedBuff) round policy of this run, made on first use."""
        if self._async_rounds is None:
            from fedjax_grid.grid.async_rounds import AsyncRounds
            self._async_rounds = AsyncRounds(self)
        return self._async_rounds

    def _launch(self, r: int) -> _Launch:
        """Start round ``r``: local sets, sampling, broadcast, client tasks submitted."""
        c = self.config
        self.healthy_workers()  # waits up to grid.wait_for_workers_s for a healthy worker
        t_round, clock = time.time(), PhaseClock()
        deadline = t_round + c.grid.deadline_s if c.grid.deadline_s else None
        assignments, new_strategy_state = self.strategy.apply(
            self.strategy_state, forming_rng(c.seed, r), r)
        sampled = sample_clients(c, r)
        dispatch = RoundDispatch(self.grid.client, self.broadcast_value(self.global_variables, r),
                                 run_id=self.run_id, round_=r,
                                 workers=lambda: self.healthy_workers(deadline),
                                 deadline=deadline)
        self.note_workers()
        clock.lap("forming")
        task_rows = []
        for k in sampled:
            if fault_sim.is_offline(c.faults, c.seed, r, int(k)):
                task_rows.append(self._row(r, k, 0, "offline", None, None, self.t0,
                                           reason="client offline (simulated availability)"))
            else:
                task_rows += self._submit(dispatch, int(k), 0, assignments[k])
        clock.lap("submit")
        clock.move(dispatch.broadcast_s, "submit", "broadcast")
        return _Launch(r, t_round, clock, deadline, assignments, new_strategy_state, sampled,
                       dispatch, task_rows)

    def _prelaunch(self, r: int) -> None:
        """Launch round ``r`` (the next one) now, while this one's BatchNorm re-estimation, evaluation,
        records and checkpoint run on the coordinator (the workers would idle otherwise).

        The next round's clients get the global parameters of this server step; their
        BatchNorm running statistics are this step's, not yet re-estimated -- clients train
        with batch statistics, so their updates are bitwise the same, and the statistics
        they return are not used by ``bn_mode`` recalibrate (re-estimated from the
        parameters alone). Skipped when no healthy worker is connected right now; any
        error while launching only drops the launch (this round's records and checkpoint
        come first; the next ``step`` launches the round again and meets the error there)."""
        try:
            if not wait_for_healthy(self.ledger, self.grid.client, grace_s=0.0, t0=self.t0,
                                    notify=lambda m: None):
                return
            self._next_launch = self._launch(r)
        except Exception:  # noqa: BLE001 - see above: never lose this round to the next one
            self._next_launch = None

    def drop_next_round(self) -> None:
        """Cancel the tasks of a round launched ahead (``_prelaunch``) that will not run."""
        launch, self._next_launch = self._next_launch, None
        if launch is not None:
            launch.dispatch.cancel_pending()
            launch.dispatch.release()

    def _take_launch(self) -> _Launch:
        """This round's launch: the one made ahead when it is this round's, else a new one."""
        if self._next_launch is not None and self._next_launch.round == self.round:
            launch, self._next_launch = self._next_launch, None
            return launch
        self.drop_next_round()
        return self._launch(self.round)

    def _step(self, prelaunch: bool = False) -> dict:
        """One synchronous round: dispatch and collect, then the server side.
        ``prelaunch``: launch the next round after this one's server step (``run`` does,
        when another round follows in the same call)."""
        c = self.config
        if self.t0 is None:
            self.t0 = time.time()
        launch = self._take_launch()
        dispatch, clock = launch.dispatch, launch.clock
        target = min(c.clients_per_round, len(launch.sampled))
        fold = self.algorithm.begin(self.state)
        self._fold_s, self._train_s = 0.0, []
        task_rows = launch.task_rows + self._collect(dispatch, fold, launch.assignments, target,
                                                     launch.deadline)
        dispatch.release()
        clock.lap("wait")
        clock.move(self._fold_s, "wait", "fold")
        self.strategy_state = launch.new_strategy_state
        return self._close_round(fold, target, task_rows, dispatch, launch.t_round,
                                 len(launch.sampled), clock, prelaunch=prelaunch)

    def _close_round(self, fold, target: int, task_rows: list, dispatch, t_round: float,
                     n_sampled: int, clock: PhaseClock, prelaunch: bool = False) -> dict:
        """Server step (with a quorum), the next round's launch (``prelaunch``), BatchNorm,
        evaluation, records, checkpoint."""
        c = self.config
        quorum = len(fold.accepted) >= max(1, int(np.ceil(c.grid.quorum * target)))
        if quorum:
            # 'aggregate': clients start from the mean statistics; 'local': clients keep
            # their own, and the mean serves the global model's evaluation only.
            self.state, _ = fold.finish()
            clock.lap("server")
        if prelaunch:
            self._prelaunch(self.round + 1)
            clock.lap("launch")
        if quorum:
            self._recalibrate_bn()
            clock.lap("bn")
        self.round += 1
        evaluated = (self.round % c.training.eval_every == 0) or self.done
        metrics = self.evaluate() if evaluated else {}
        clock.lap("eval")
        for t in task_rows:
            self.records.add_task(t)
        row = {"round": self.round, "global_loss": float(metrics.get("loss", np.nan)),
               "global_accuracy": float(metrics.get("accuracy", np.nan)),
               "logit_spread": metrics.get("logit_spread", np.nan),
               "logit_spread_train": metrics.get("logit_spread_train", np.nan),
               "bn_collapse": metrics.get("bn_collapse"),
               "round_time_s": time.time() - t_round, "elapsed_s": time.time() - self.t0,
               "clients_sampled": n_sampled, **self.records.task_counts(self.round),
               "quorum": bool(quorum), "bytes_sent": int(dispatch.bytes_sent),
               "bytes_received": int(dispatch.bytes_received)}
        self.records.add_round(row)
        self._checkpoint()
        clock.lap("records")
        self.profile.append({"round": self.round, **clock.seconds,
                             "train_s": float(np.mean(self._train_s)) if self._train_s else np.nan,
                             "tasks": len(self._train_s)})
        return row

    def healthy_workers(self, deadline: Optional[float] = None) -> list[str]:
        """Addresses of the healthy workers (see ``grid.health``), waiting for one to
        connect up to ``grid.wait_for_workers_s`` seconds -- or, inside a round with a
        deadline, until the deadline (then ``[]``). After the grace period without
        any: ``NoWorkersError`` (the last checkpoint stays resumable)."""
        if self.grid is None:
            self.start()
        grace = self.config.grid.wait_for_workers_s
        if deadline is not None and deadline - time.time() < grace:
            try:
                return wait_for_healthy(self.ledger, self.grid.client,
                                        grace_s=max(0.0, deadline - time.time()), t0=self.t0,
                                        notify=self.notify,
                                        check=lambda: check_connected(self.grid.client, self.round))
            except NoWorkersError:
                return []
        return wait_for_healthy(self.ledger, self.grid.client, grace_s=grace, t0=self.t0,
                                notify=self.notify,
                                check=lambda: check_connected(self.grid.client, self.round))

    def _submit(self, dispatch: RoundDispatch, k: int, attempt: int, indices,
                avoid: str = "") -> list[dict]:
        """Submit client ``k``'s task, with its examples when the data is shipped (not to
        ``avoid``, the worker where its last attempt failed, when others are ready).
        Returns ``[]``, or the task's ``late`` row when no worker took the weights in time."""
        shipped = None
        if self.config.data.mode == "shipped":
            batch = self.train.__getitems__(indices)
            shipped = {"images": batch["image"], "labels": batch["label"]}
        if dispatch.submit(k, attempt, self._task_spec(dispatch.round, k, attempt, indices),
                           shipped, avoid=avoid):
            return []
        now = time.time()
        return [self._row(dispatch.round, k, attempt, "late", None, (now, now), self.t0,
                          reason="no responsive worker took the global weights before the deadline")]

    def _collect(self, dispatch: RoundDispatch, fold, assignments, target: int,
                 deadline: Optional[float]) -> list[dict]:
        """Fold finished updates into ``fold`` until all are in, the overcommit quota is
        met or the deadline passes; re-submit failed tasks while retries and time remain;
        cancel stragglers. Returns the task rows; each outcome is counted for its worker
        (``self.ledger``), which may quarantine it."""
        g = self.config.grid
        quota_met = (lambda: len(fold.accepted) >= target) if g.overcommit > 0 else (lambda: False)
        rows = []
        for fut, k, attempt in dispatch.completed(deadline, stop=quota_met):
            if fut.status == "finished":
                try:
                    rows.append(self._finished_row(dispatch, fold, fut, k, attempt, quota_met))
                    continue
                except ResultLost:
                    pass  # its worker went away holding the result: failed, retried below
            row = self._failed_row(dispatch, fut, k, attempt)
            rows.append(row)
            if attempt < g.retries and (deadline is None or time.time() < deadline):
                rows += self._submit(dispatch, k, attempt + 1, assignments[k], avoid=row["worker"])
        return rows + self._cancel_stragglers(dispatch, deadline)

    def _finished_row(self, dispatch: RoundDispatch, fold, fut, k: int, attempt: int,
                      quota_met) -> dict:
        """The row of a finished task: its update folded in (``ok``), ``rejected`` by the
        server's checks, or ``late`` (quota already met, or its result unreachable)."""
        r = dispatch.round
        res = dispatch.result(fut)
        if res is not None:
            self.note_held(k, res)
        if res is None:  # its worker froze after finishing: the result is late
            where = task_workers(dispatch.dask_client, [fut.key]).get(fut.key, "")
            row = self._row(r, k, attempt, "late", None,
                            (dispatch.submitted_at[fut], time.time()), self.t0,
                            reason="result not fetched in time (worker unresponsive)")
            row["worker"] = where
            row["bytes_in"] = dispatch.task_bytes[fut]
            self.ledger.record(where, "late")
            return row
        if quota_met():
            status, reason = "late", "quota of clients already met (overcommit)"
        else:
            t_fold = time.perf_counter()
            reason = fold.add_delta(res["delta"], max(1, res["num_examples"]), k,
                                    batch_stats=res["batch_stats"], bn_moments=res["bn_moments"])
            self._fold_s += time.perf_counter() - t_fold
            self._train_s.append(float(res.get("train_s", np.nan)))
            status = "ok" if reason is None else "rejected"
            self._keep_client_bn(status, k, res)
        row = self._row(r, k, attempt, status, res, None, self.t0, reason=reason or "")
        row["bytes_out"] = res["bytes_out"]
        self.ledger.record(row["worker"], status)
        row["bytes_in"] = dispatch.task_bytes[fut]
        return row

    def _keep_client_bn(self, status: str, k: int, res: dict) -> None:
        """bn_mode 'local': an accepted client keeps its own final statistics; a codec with
        error feedback: an accepted client's new state (residual) replaces its old one
        (a rejected, late or lost update leaves the old residual in place)."""
        if status == "ok" and self.config.server.bn_mode == "local" and res["batch_stats"] is not None:
            self.client_bn[k] = res["batch_stats"]
        if status == "ok" and res.get("codec_state") is not None:
            self.codec_state[k] = res["codec_state"]

    def broadcast_value(self, gvars: dict, index: int):
        """What is scattered to the workers: ``gvars``, or with ``server.broadcast_codec``
        its full-model payload (rng seeded from (seed, index)). Clients train from and take
        their delta against the decoded weights they received; the server folds each delta
        into its exact parameters (so a lossy broadcast costs the clients' start point, it
        does not accumulate in the global model).

        ``server.broadcast='delta'``: the chain advances to version ``index`` and the value
        is a function of the receiving workers (``compression.chain``): the steps from the
        oldest version they hold, plus the full reference when one of them holds nothing
        known."""
        codec = self.config.server.broadcast_codec
        rng = np.random.default_rng([self.config.seed, _BROADCAST_STREAM, int(index)])
        if self.config.server.broadcast == "delta":
            from fedjax_grid.compression.chain import BroadcastChain
            if self.chain is None:
                self.chain = BroadcastChain(codec.model_dump())
            self.chain.advance(gvars, int(index), rng)
            return self._chain_payload
        if codec.name == "none":
            return gvars
        from fedjax_grid.compression import broadcast_payload
        payload, _ = broadcast_payload(gvars, None, codec, rng, full=codec.model_dump(),
                                       version=int(index))
        return payload

    def _chain_payload(self, workers: list) -> dict:
        """The chain payload for ``workers`` (addresses), from the versions they hold."""
        return self.chain.payload([self.worker_versions.get(w) for w in workers], run=self.run_id)

    def note_held(self, k: int, res: dict) -> None:
        """server.broadcast='delta': the worker that ran client ``k``'s task and the client
        now hold the version it trained from."""
        v = res.get("held_version")
        if v is not None:
            self.worker_versions[res["worker"]] = int(v)
            self.client_versions[int(k)] = int(v)

    def _failed_row(self, dispatch: RoundDispatch, fut, k: int, attempt: int) -> dict:
        """The ``failed`` row of a task that raised or lost its worker; that worker is
        given no more of this round's tasks when it was lost or is now quarantined."""
        err, lost_worker = _error_text(fut)
        where = lost_worker or task_workers(dispatch.dask_client, [fut.key]).get(fut.key, "")
        fut.release()
        row = self._row(dispatch.round, k, attempt, "failed", None,
                        (dispatch.submitted_at[fut], time.time()), self.t0, reason=err)
        row["worker"] = where  # KilledWorker: the desktop that was lost
        row["worker_name"] = self.worker_names.get(where, "")
        row["bytes_in"] = dispatch.task_bytes[fut]
        self.ledger.record(where, "failed")
        self.worker_versions.pop(where, None)  # its cached copy is unknown now (full next time)
        if err.startswith("StaleCopy"):
            dispatch.ready = []  # a desktop lost its copy: re-broadcast, now with the full model
        if lost_worker or self.ledger.is_quarantined(where):
            dispatch.exclude(where)
        return row

    def _cancel_stragglers(self, dispatch: RoundDispatch, deadline: Optional[float]) -> list[dict]:
        """Cancel the tasks still pending and return their ``late`` rows; their results
        never reach a later round."""
        if not dispatch.pending:
            return []
        running_on = task_workers(dispatch.dask_client, [f.key for f in dispatch.pending])
        now = time.time()
        rows = []
        for fut, k, attempt, submitted in dispatch.cancel_pending():
            row = self._row(dispatch.round, k, attempt, "late", None, (submitted, now), self.t0,
                            reason="past the round deadline" if deadline
                            else "not needed (overcommit)")
            row["worker"] = running_on.get(fut.key, "")  # '' : still queued
            row["worker_name"] = self.worker_names.get(row["worker"], "")
            row["bytes_in"] = dispatch.task_bytes[fut]
            self.ledger.record(row["worker"], "late")
            rows.append(row)
        return rows

    def _row(self, r, k, attempt, status, res, span, t0, reason="") -> dict:
        """A task row; ``r`` is the 0-based round index, recorded as round ``r + 1``.

        The fault plan is not drawn again: the speed factor is the client's own, and a
        hostile update is named from the plan the task ran (``res['plan']``)."""
        c = self.config
        plan = (res or {}).get("plan") or {}
        if res is not None:
            start, end = res["start"], res["end"]
        elif span is not None:
            start, end = span
        else:
            start = end = time.time()
        m = (res or {}).get("metrics", {})
        if plan.get("attack") and status in ("ok", "rejected"):
            reason = f"{reason}; " if reason else ""
            reason += f"hostile client (simulated {plan['attack']} x{plan['attack_scale']:g})"
        return {"round": int(r) + 1, "client": int(k), "worker": (res or {}).get("worker", ""),
                "worker_name": (res or {}).get("worker_name", ""),
                "attempt": int(attempt),
                "num_samples": int((res or {}).get("num_examples", 0)),
                "local_loss": float(m.get("loss", np.nan)),
                "local_accuracy": float(m.get("accuracy", np.nan)),
                "start_s": start - t0, "end_s": end - t0, "duration_s": end - start,
                "status": status, "reason": str(reason)[:300],
                "bytes_in": 0, "bytes_out": 0,
                "speed_factor": fault_sim.speed_factor(c.faults, c.seed, int(k)),
                "version": int(r), "staleness": 0, "codec": str(c.server.codec),
                "transfer_s": float((res or {}).get("transfer_s", 0.0))}

    # -- evaluation, loop, checkpoints -------------------------------------------
    def evaluate(self) -> dict:
        """The global model on the test split: ``{'loss', 'accuracy', 'num_examples'}``
        plus the collapse check on the first test batch (``training.bn_stats.logit_spread``):
        ``logit_spread`` / ``logit_spread_train`` (evaluation- / training-mode logits)
        and ``bn_collapse``."""
        from fedjax_grid.training import Standardize, evaluate
        from fedjax_grid.training.bn_stats import logit_spread
        images, labels = self.test_arrays
        prep = Standardize(mean=self.mean, std=self.std)
        out = evaluate(self.model, self.global_variables, (images, labels),
                       self.config.training.test_batch_size, preprocess=prep)
        if len(images) >= 2:
            spread = logit_spread(self.model, self.global_variables,
                                  images[:self.config.training.test_batch_size], preprocess=prep)
            out.update(logit_spread=spread["eval"], logit_spread_train=spread["train"],
                       bn_collapse=spread["collapsed"])
        return out

    def _recalibrate_bn(self) -> None:
        self.state = self.recalibrated(self.state)

    def recalibrated(self, state):
        """bn_mode 'recalibrate' / 'local': ``state`` with its BatchNorm statistics
        re-estimated exactly on ``server.bn_calibration_examples`` training examples (a
        seeded subset, the same every time); else ``state`` unchanged."""
        s = self.config.server
        if s.bn_mode not in ("recalibrate", "local") or state.batch_stats is None:
            return state
        from fedjax_grid.federated.server import server_variables
        from fedjax_grid.training import Standardize
        from fedjax_grid.training.bn_stats import calibration_indices, recalibrated_stats
        idx = calibration_indices(len(self.train), s.bn_calibration_examples, self.config.seed)
        return state._replace(batch_stats=recalibrated_stats(
            self.model, server_variables(state), self.train, self.config.training.batch_size,
            indices=idx, preprocess=Standardize(mean=self.mean, std=self.std)))

    def run(self, rounds: Optional[int] = None, callback: Optional[Callable] = None,
            should_stop: Optional[Callable[[], bool]] = None):
        """Run until ``rounds`` (default: the config's) or ``should_stop()``; return records."""
        end = self.config.training.rounds if rounds is None else min(
            self.config.training.rounds, self.round + rounds)
        locked_here = not self.lock.held  # a caller that called start() keeps it till close()
        self.start()
        try:
            while self.round < end:
                if should_stop is not None and should_stop():
                    break
                row = self.step(prelaunch=self.config.grid.overlap_rounds and self.round + 1 < end)
                if callback is not None:
                    callback(row)
            self.save_records()
        finally:
            self.drop_next_round()  # stopped early: the round launched ahead is not run
            if locked_here:
                self.lock.release()
        return self.records

    def save_records(self) -> None:
        self.records.set_workers(self.ledger.table_rows())
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.config.save(self.out_dir / "config.json")
        self.records.save(self.out_dir)
        if self.profile:
            import pandas as pd
            from fedjax_grid.atomic_write import atomic_path
            with atomic_path(self.out_dir / "profile.csv") as tmp:
                pd.DataFrame(self.profile).to_csv(tmp, index=False)

    def _checkpoint(self, extra: Optional[dict] = None) -> None:
        """Atomic checkpoint of the state after ``self.round`` (``extra``: more meta,
        e.g. the asynchronous policy's task counter and tasks in flight)."""
        from fedjax_grid.grid.checkpoint import save_checkpoint
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.records.set_workers(self.ledger.table_rows())
        meta = {"fingerprint": self.config.fingerprint(), "round": self.round,
                "records": self.records.to_json_state(), "config": self.config.to_dict(),
                **(extra or {})}
        arrays = {"strategy": _flatten_state(self.strategy_state)}
        if self.client_bn:
            arrays["client_bn"] = {str(k): v for k, v in sorted(self.client_bn.items())}
        if self.codec_state:
            arrays["codec_state"] = {str(k): v for k, v in sorted(self.codec_state.items())}
        if self.chain is not None and self.chain.reference is not None:
            arrays["broadcast_reference"] = self.chain.reference
            meta["broadcast_chain"] = {
                "version": self.chain.version,
                "clients": {str(k): v for k, v in sorted(self.client_versions.items())}}
        save_checkpoint(self.ckpt_dir, self.round, self.state, meta, arrays)
        self.save_records()

    def _restore(self) -> None:
        from fedjax_grid.errors import CheckpointError
        from fedjax_grid.grid.checkpoint import latest_checkpoint, load_checkpoint
        from fedjax_grid.grid.records import Records
        path = latest_checkpoint(self.ckpt_dir)
        if path is None:
            raise CheckpointError(f"--resume: no checkpoint in {str(self.ckpt_dir)!r}")
        tree, meta, arrays = load_checkpoint(path, template=self.state)
        if meta.get("fingerprint") != self.config.fingerprint():
            raise CheckpointError(f"checkpoint {str(path)!r} belongs to another experiment "
                                  "(its config differs beyond rounds/out/grid)")
        self.state = tree
        self.round = int(meta["round"])
        self.records = Records.from_json_state(meta["records"])
        self.ledger = WorkerLedger(fedjax_grid.__version__, self.config.grid.quarantine_after,
                                   notify=lambda m: self.notify(m),
                                   rows=self.records.worker_rows())
        self.strategy_state = _unflatten_state(arrays["strategy"], self.strategy_state)
        self.client_bn = {int(k): v for k, v in arrays.get("client_bn", {}).items()}
        self.codec_state = {int(k): v for k, v in arrays.get("codec_state", {}).items()}
        chain = meta.get("broadcast_chain")
        if chain is not None and "broadcast_reference" in arrays:
            from fedjax_grid.compression.chain import BroadcastChain
            self.chain = BroadcastChain(self.config.server.broadcast_codec.model_dump())
            from fedjax_grid.grid.tasks import ordered_like
            self.chain.restore({"version": chain["version"], "reference": ordered_like(
                self.global_variables, arrays["broadcast_reference"])})
            self.client_versions = {int(k): int(v) for k, v in chain["clients"].items()}
        self.restored_async = meta.get("async") or {}
        rounds = self.records.rounds()
        elapsed = float(rounds["elapsed_s"].iloc[-1]) if len(rounds) else 0.0
        self.t0 = time.time() - elapsed


_WORKER_ADDR = re.compile(r"(?:tcp|tls|inproc|ucx)://[^\s,'\"]+?(?=\.?(?:\s|$))")


def _scheduler_task_workers(dask_scheduler=None, keys=()):
    """(runs on the scheduler) key -> address of the worker running / that ran it."""
    out = {}
    for key in keys:
        ts = dask_scheduler.tasks.get(key)
        if ts is None:
            continue
        if ts.processing_on is not None:
            out[key] = ts.processing_on.address
        elif getattr(ts, "erred_on", None):
            out[key] = sorted(ts.erred_on)[0]
    return out


def task_workers(dask_client, keys) -> dict:
    """Which worker runs (or ran, for an erred task) each key; {} if the scheduler can't say."""
    try:
        return dask_client.run_on_scheduler(_scheduler_task_workers, keys=list(keys))
    except Exception:  # noqa: BLE001 - attribution is best effort, never fatal
        return {}


def _error_text(fut) -> tuple[str, str]:
    """(one-line reason, lost worker address or '') of a failed future.

    Dask runs with ``allowed-failures=0`` (see ``grid.cluster``), so a task whose worker
    died errs with ``KilledWorker`` instead of being re-run silently; its reason names
    the lost worker and the engine re-submits it as attempt + 1.
    """
    try:
        exc = fut.exception(timeout=5)
    except Exception as e:  # noqa: BLE001
        exc = e
    text = str(exc).splitlines()[0] if str(exc) else ""
    if type(exc).__name__ == "KilledWorker":
        m = _WORKER_ADDR.search(text)
        worker = m.group(0) if m else ""
        return f"KilledWorker: lost worker {worker or '?'} while running the task", worker
    return f"{type(exc).__name__}: {text}", ""


def _flatten_state(state: dict) -> dict:
    return {k: np.asarray(v) for k, v in state.items()}


def _unflatten_state(arrays: dict, like: dict) -> dict:
    out = {}
    for k, v in like.items():
        a = arrays[k]
        out[k] = a if isinstance(v, np.ndarray) else type(v)(a.item() if a.ndim == 0 else a)
    return out
