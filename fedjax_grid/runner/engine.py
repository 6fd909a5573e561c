"""The federated engine: a run's life cycle over real Dask workers.

``FederatedRun(config)`` gets its data, partition strategy, model, algorithm and
initial server state from the builders (:mod:`fedjax_grid.experiments.build`), puts
them in a :class:`~fedjax_grid.runner.context.RunContext` (everything a round needs:
the grid, the worker ledger, the records, the per-client state, task and row builders,
evaluation, checkpoints), and hands that context to the round policy the config names
(``server.mode``, :data:`~fedjax_grid.federated.round_policies.ROUND_POLICIES`: ``sync``
rounds with a barrier, ``async`` FedBuff). The policy owns the round; the engine owns
the run: the run folder's lock, the grid's start and close, start-up stages, resume,
and the loop::

    run = FederatedRun(config, out_dir="runs/x")        # or resume=True
    row = run.step()            # one round (one server update); its rounds-table row
    records = run.run()         # the remaining rounds (or until should_stop())
    run.close()

Round numbers: for people and in every record, rounds count from 1 -- the row
``round = k`` is the k-th round, ``run.round`` is the number of rounds done, and the
checkpoint ``ckpt-00000k.npz`` holds the state after round k. Internally the 0-based
index ``r = k - 1`` keys the randomness (forming, sampling, faults) and the task keys.

Everything random derives from (seed, stream, round, client, attempt), and updates are
summed in float64 on the coordinator, so a resumed run reaches the same final
parameters as an uninterrupted one.

Start-up (data, model, grid, the first round that compiles the model on the workers)
is timed by :class:`~fedjax_grid.grid.stages.Stages`; pass ``on_stage=callback`` to see
each stage as it begins and ends.
"""
from __future__ import annotations

import pathlib
import sys
from typing import Callable, Optional

import numpy as np

from fedjax_grid.errors import UserError
from fedjax_grid.experiments.build import build_data, build_experiment, partition_strategy
from fedjax_grid.experiments.config import ExperimentConfig
from fedjax_grid.federated.round_policies import ROUND_POLICIES
from fedjax_grid.grid.cluster import require_listening
from fedjax_grid.grid.plugin import size_own_xla_pool
from fedjax_grid.grid.runlock import RunFolderLock
from fedjax_grid.grid.stages import Stages
from fedjax_grid.models.precision import emulated_bf16_warning
from fedjax_grid.runner.context import RoundStopped, RunContext, StopRequested
from fedjax_grid.training.compile_cache import default_cache_dir, enable_persistent_cache


def worker_bf16_support(dask_client, timeout_s: float = 10.0) -> dict:
    """Worker address -> ``grid.plugin.bf16_support()`` there; {} when the workers do not
    all answer within ``timeout_s`` (a frozen desktop must not hold up the start)."""
    from fedjax_grid.grid.plugin import bf16_support
    try:
        # Client.run hands callback_timeout to its sync wrapper, not to the function
        return dask_client.run(bf16_support, on_error="return", callback_timeout=timeout_s) or {}
    except Exception:  # noqa: BLE001 - a timeout or a lost scheduler: no advice then
        return {}


def warn_stderr(message: str) -> None:
    """Default ``notify``: one line ``warning: ...`` on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _context(name: str, doc: str) -> property:
    """A property of the run that is its context's attribute ``name``."""
    return property(lambda self: getattr(self.context, name),
                    lambda self, value: setattr(self.context, name, value), doc=doc)


def _built(name: str, doc: str) -> property:
    """A read-only property of what the builders made (``Experiment`` or its data)."""
    def get(self):
        exp = self.context.exp
        return getattr(exp, name) if hasattr(exp, name) else getattr(exp.data, name)
    return property(get, doc=doc)


class FederatedRun:
    """A federated experiment on a Dask grid, run round by round.

    config: a validated ``ExperimentConfig``. out_dir: where records, checkpoints
    and plots go (default ``config.out_dir`` or ``runs/<name>``). resume: continue
    from the last checkpoint in ``out_dir/checkpoints``. grid: an already open
    ``GridHandle`` to reuse (else one is opened from ``config.grid`` on ``start``).
    notify: called with one-line messages about the grid (a quarantined worker,
    waiting for workers); default: ``warning: ...`` on stderr.
    on_stage: called with each start-up event (see :mod:`fedjax_grid.grid.stages`).

    ``context`` is the run's :class:`~fedjax_grid.runner.context.RunContext` and
    ``policy`` its round policy; ``stopped`` (after ``run``): None, or the
    :class:`~fedjax_grid.runner.context.RoundStopped` that ended it early (its ``round``
    and how many ``tasks`` were recorded as ``stopped``); ``worker_names`` maps the address of every worker
    seen to its ``--name`` ('' when it has none); ``stages.log`` holds the timed
    start-up stages.
    """

    def __init__(self, config: ExperimentConfig, *, out_dir=None, resume: bool = False,
                 grid=None, notify: Optional[Callable[[str], None]] = None,
                 on_stage: Optional[Callable[[dict], None]] = None):
        self.config = c = config.validate()
        # before anything here starts JAX: the coordinator's XLA pool (its numbers, its cores)
        size_own_xla_pool(c.grid.coordinator_xla_threads)
        self.stages = Stages(on_stage)
        self.out_dir = pathlib.Path(out_dir or config.out_dir or pathlib.Path("runs") / config.name)
        #: Held from ``start()`` (or the first ``step()``) until ``run()`` returns or ``close()``.
        self.lock = RunFolderLock(self.out_dir)
        self.lock.probe()  # another run writes there now: refuse before reading anything
        if grid is None and not resume:
            # nobody at grid.scheduler's port: said now, not after the data load and the
            # compile (a resumed run may be finished: it needs no scheduler to say so)
            require_listening(c.grid)
        self._own_grid, self._first_step = grid is None, True
        with self.stages.stage("data", f"loading and partitioning {c.data.source} "
                               f"({c.partition.num_clients} clients, "
                               f"{c.partition.distribution})") as info:
            data = build_data(c)
            strategy = partition_strategy(c, np.asarray(data.train.labels))
            info["detail"] = f"{len(data.train)} training / {len(data.test_arrays[1])} test images"
        with self.stages.stage("model", f"building {c.model.name} and the server state"):
            enable_persistent_cache(c.grid.compile_cache_dir or default_cache_dir())
            exp = build_experiment(c, data=data, strategy=strategy)
            self.context = RunContext(c, exp, out_dir=self.out_dir, notify=notify or warn_stderr)
        self.context.grid = grid
        if resume:
            self.context.restore()
        elif self.ckpt_dir.exists() and any(self.ckpt_dir.glob("ckpt-*")):
            raise UserError(f"{str(self.out_dir)!r} already holds checkpoints of a run: pass "
                            "--resume to continue it or choose another --out")
        #: the round policy (``server.mode``): owns each round over ``context``
        self.policy = ROUND_POLICIES.get(c.server.mode).obj(self.context)
        self.stopped: Optional[RoundStopped] = None
        self._bf16_checked = False

    # -- the run's state (in its context) -----------------------------------------------
    state = _context("state", "the server state (ServerState) after ``round`` rounds")
    round = _context("round", "rounds (server updates) done")
    records = _context("records", "the run's Records (tasks, rounds, workers tables)")
    grid = _context("grid", "the GridHandle (None before ``start``)")
    strategy_state = _context("strategy_state", "the forming strategy's state")
    notify = _context("notify", "called with one-line messages about the grid")
    worker_names = _context("worker_names", "address -> --name of every worker seen")
    profile = _context("profile", "synchronous rounds: seconds per coordinator phase, per round")
    t0 = _context("t0", "wall-clock start of the run (seconds since the epoch)")
    ckpt_dir = _context("ckpt_dir", "where the checkpoints go (out_dir/checkpoints)")
    clients = _context("clients", "the per-client state store (runner.clients.ClientStates)")
    broadcast = _context("broadcast", "the broadcast: codec, delta chain, versions held")
    ledger = _context("ledger", "host reliability of every worker seen (grid.health)")
    global_variables = property(lambda self: self.context.global_variables,
                                doc="{'params', ['batch_stats']} of the server state")
    done = property(lambda self: self.context.done, doc="all training.rounds are done")
    evaluation_pending = property(lambda self: self.context.evaluation_pending,
                                  doc="the last round's evaluation was stopped (run() does it)")
    # -- what the builders made (fedjax_grid.experiments.build) -------------------------
    train = _built("train", "training ImageDataset (D examples)")
    test = _built("test", "test ImageDataset")
    info = _built("info", "the source's DatasetInfo")
    test_arrays = _built("test_arrays", "(images, labels) evaluated")
    mean = _built("mean", "per-channel mean, pixels in [0, 1]")
    std = _built("std", "per-channel std, pixels in [0, 1]")
    strategy = _built("strategy", "the forming strategy")
    model = _built("model", "the Flax module")
    model_key = _built("model_key", "hashable model description")
    hparams = _built("hparams", "the clients' HParams")
    algorithm = _built("algorithm", "the pure federated algorithm")

    # -- grid -----------------------------------------------------------------------------
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
        if self.config.training.precision == "bf16" and not self._bf16_checked:
            self._bf16_checked = True
            if message := emulated_bf16_warning(worker_bf16_support(self.grid.client)):
                self.notify(message)
        return self.grid

    def note_workers(self) -> dict:
        """The grid's workers now (address -> info); remembers their names."""
        return self.context.note_workers()

    def healthy_workers(self, deadline: Optional[float] = None) -> list[str]:
        """Healthy worker addresses, waiting for one (see ``RunContext.healthy_workers``)."""
        if self.grid is None:
            self.start()
        return self.context.healthy_workers(deadline)

    def close(self) -> None:
        """Cancel what is in flight, close the grid when this run opened it, unlock."""
        try:
            self.policy.close()  # tasks still in flight are not needed any more
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

    # -- rounds ---------------------------------------------------------------------------
    def step(self, prelaunch: bool = False) -> dict:
        """Run one round; return its row of the rounds table (``row['round']`` = rounds done).

        ``prelaunch`` (synchronous rounds): submit the next round's tasks right after this
        round's server step, so the workers train while the coordinator re-estimates
        BatchNorm, evaluates and checkpoints; they stay in flight after ``step`` returns
        and the next ``step`` collects them (``close`` or ``drop_next_round`` cancel them).
        ``run`` does this when ``grid.overlap_rounds`` is on and another round follows."""
        if self.grid is None or not self.lock.held:
            self.start()
        self.context.evaluate_pending()  # a Stop cut the last round's evaluation: do it now
        if not self._first_step:
            return self.policy.step(prelaunch=prelaunch)
        self._first_step = False
        c = self.config
        with self.stages.stage("first_round", f"round {self.round + 1}/{c.training.rounds}: "
                               "compiling the model on the workers and training") as info:
            row = self.policy.step(prelaunch=prelaunch)
            info["detail"] = f"{row['clients_ok']}/{row['clients_sampled']} clients ok"
        return row

    def drop_next_round(self) -> None:
        """Cancel the tasks of a round launched ahead (``step(prelaunch=True)``) that will
        not run."""
        self.policy.drop_ahead()

    def run(self, rounds: Optional[int] = None, callback: Optional[Callable] = None,
            should_stop: Optional[Callable[[], bool]] = None):
        """Run until ``rounds`` (default: the config's) or ``should_stop()``; return records.

        ``should_stop`` is polled between rounds and inside them (at least every 0.2 s
        while a round waits): a Stop cancels the round's tasks in flight, records them as
        ``stopped`` and returns; ``stopped`` then says so, the state is the last
        checkpoint's and the run resumes from it (``FederatedRun(..., resume=True)``).
        A Stop during the evaluation after a server update abandons it (the round is
        kept, its ``evaluation`` 'stopped'); the resumed run evaluates it first."""
        end = self.config.training.rounds if rounds is None else min(
            self.config.training.rounds, self.round + rounds)
        locked_here = not self.lock.held  # a caller that called start() keeps it till close()
        self.start()
        self.stopped = None
        self.context.should_stop = should_stop or (lambda: False)
        try:
            if not self.context.evaluate_pending():   # Stop pressed again meanwhile
                self.stopped = RoundStopped(self.round, 0)
            while self.stopped is None and self.round < end:
                if self.context.stop_requested():
                    self.stopped = self._stop_between_rounds()
                    break
                try:
                    row = self.step(prelaunch=self.config.grid.overlap_rounds
                                    and self.round + 1 < end)
                except RoundStopped as stop:
                    self.stopped = stop
                    break
                except StopRequested:   # waiting for workers: nothing was submitted
                    self.stopped = self._stop_between_rounds()
                    break
                if callback is not None:
                    callback(row)
            if self.stopped is None:   # a Stop wrote them already (record_stop, finish_round)
                self.save_records()
            if self.stopped is None and self.round >= self.config.training.rounds:
                self._warn_participation()  # of a finished run only
        finally:
            self.context.should_stop = lambda: False
            self.drop_next_round()  # stopped early: the round launched ahead is not run
            if locked_here:
                self.lock.release()
        return self.records

    def _warn_participation(self) -> None:
        """One line through ``notify`` when some client contributed nothing, or far less
        than others (:func:`fedjax_grid.runner.participation.participation_warning`)."""
        from fedjax_grid.runner.participation import participation_warning
        if self.records.num_tasks:
            message = participation_warning(self.context.participation())
            if message:
                self.notify(message)

    def _stop_between_rounds(self) -> RoundStopped:
        """Stop with no round in progress: tasks launched ahead are recorded as stopped."""
        return RoundStopped(self.round + 1, self.policy.stop())

    # -- the coordinator's computations, records -------------------------------------------
    def evaluate(self) -> dict:
        """The global model on the test split: ``{'loss', 'accuracy', 'num_examples'}`` and
        the BatchNorm collapse check (``runner.evaluation.evaluate``)."""
        return self.context.evaluate()

    def recalibrated(self, state):
        """``state`` with its BatchNorm statistics re-estimated where ``server.bn_mode``
        asks for it (``runner.evaluation.recalibrated``)."""
        return self.context.recalibrated(state)

    def broadcast_value(self, gvars: dict, index: int):
        """What the workers receive for global version ``index`` (``runner.broadcast``)."""
        return self.context.broadcast.value(gvars, index)

    def save_records(self) -> None:
        """Write records, profile and config.json to ``out_dir`` (atomically)."""
        self.context.save_records()
