"""What a run will cost before it starts: wall time and bytes, from the config and one
measured training step.

``measure_step(model, variables, image_shape, hparams)`` times the jit-compiled local
training step of the run's own model on random batches of the run's shape, in this
process (the CLI; a panel with a grid runs it on one of the grid's workers): its
compile time, its seconds per step (from 3 and 6 steps, so the per-task overhead
cancels) and that per-task overhead. Results are kept per machine in
``~/.cache/fedjax_grid/step_times.json`` (keyed by model, input shape, batch,
optimiser, JAX version and host), so a second estimate of the same model costs
nothing.

``estimate(...)`` is pure: from the config, the training-set size, the payload
sizes of one broadcast and one update (``payload_bytes``) and the measured step it
predicts

- a round: ``waves`` x ``steps per task`` x ``step_s`` (+ the per-task overhead), where
  the tasks of a round run ``parallel`` at a time -- on an embedded LocalCluster the
  workers share this machine, whose step was measured using all of its cores, so they
  add no speed (``parallel`` = 1); on a scheduler each desktop is assumed as fast as
  the measuring machine -- plus the coordinator's BatchNorm re-estimation and
  evaluation (forward passes at a third of a training step per example);
- the run: compile once + rounds x round (rounds still to run);
- bytes: per round, the broadcast to each worker (``server.broadcast_codec``; with
  ``server.broadcast=delta`` one change after the first full copy), the shipped
  examples (``data.mode=shipped``) and every client's update (``server.codec``).

It is an estimate (measured against real runs in tests/experiments/test_cost.py:
within a factor of 2 on the quickstart); simulated faults, slow links and deadlines
are not in it. ``CONFIRM_ABOVE_S`` (10 min, ``$FEDJAX_GRID_CONFIRM_ABOVE_S``) is where the
CLI and the run panel ask before starting.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import socket
import time
from typing import Optional

import numpy as np

#: Runs estimated longer than this (seconds of wall time) need a confirmation to start.
CONFIRM_ABOVE_S = 600.0
CACHE_FILE = "step_times.json"


def confirm_above_s() -> float:
    """The confirmation threshold in seconds (``$FEDJAX_GRID_CONFIRM_ABOVE_S`` or 600)."""
    try:
        return float(os.environ.get("FEDJAX_GRID_CONFIRM_ABOVE_S", CONFIRM_ABOVE_S))
    except ValueError:
        return CONFIRM_ABOVE_S


@dataclasses.dataclass(frozen=True)
class StepTime:
    """A measured local training step: seconds per step (one batch), per-task overhead,
    compile time, and where/when it was measured."""
    step_s: float
    overhead_s: float
    compile_s: float
    where: str
    measured_at: float
    cached: bool = False


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The predicted cost of a run (see the module docstring); seconds and bytes."""
    wall_s: float
    compile_s: float
    round_s: float
    rounds: int
    bytes_down: int
    bytes_up: int
    tasks_per_round: int
    steps_per_task: int
    parallel: int
    step: StepTime

    def needs_confirmation(self, threshold_s: Optional[float] = None) -> bool:
        return self.wall_s > (confirm_above_s() if threshold_s is None else threshold_s)

    def summary(self) -> str:
        """One line: wall time, its parts, bytes, and what the step time is based on."""
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.step.measured_at))
        basis = f"measured {'on ' + when + ' ' if self.step.cached else ''}on {self.step.where}"
        return (f"estimate: {duration_text(self.wall_s)} wall time ({duration_text(self.compile_s)} "
                f"compile + {self.rounds} rounds x {duration_text(self.round_s)}), "
                f"{bytes_text(self.bytes_down)} to the workers, {bytes_text(self.bytes_up)} back; "
                f"{self.tasks_per_round} tasks of {self.steps_per_task} steps per round, "
                f"{self.step.step_s * 1000:.1f} ms per step ({basis})")


def duration_text(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def bytes_text(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def steps_per_task(cfg, train_size: int) -> int:
    """Local steps of one client task: local epochs x batches of its d = D / C examples."""
    d = max(1, train_size // cfg.partition.num_clients)
    return cfg.training.local_epochs * math.ceil(d / cfg.training.batch_size)


def tasks_per_round(cfg) -> int:
    """Client tasks per round (async: per server update, its buffer)."""
    if cfg.server.mode == "async":
        concurrency = cfg.server.concurrency or cfg.clients_per_round
        return cfg.server.buffer_size or max(1, concurrency // 2)
    return min(cfg.partition.num_clients, cfg.clients_per_round + cfg.grid.overcommit)


def estimate(cfg, *, train_size: int, example_bytes: int, payload_bytes: dict,
             step: StepTime, workers: int, rounds_done: int = 0,
             test_size: Optional[int] = None) -> Estimate:
    """The cost of the rounds still to run (pure; see the module docstring).

    payload_bytes: ``{'full': model as broadcast in full, 'broadcast': one broadcast
    with server.broadcast_codec, 'update': one client update with server.codec}``.
    workers: the grid's workers (LocalCluster: ``grid.workers``). test_size: examples
    evaluated per evaluation (default ``data.max_test_examples`` or 10,000).
    """
    tasks, steps = tasks_per_round(cfg), steps_per_task(cfg, train_size)
    local = cfg.grid.scheduler is None
    parallel = 1 if local else max(1, min(workers, tasks))
    waves = tasks if local else math.ceil(tasks / parallel)
    forward_s = step.step_s / cfg.training.batch_size / 3.0   # per example
    test_size = test_size or cfg.data.max_test_examples or 10_000
    bn = min(train_size, cfg.server.bn_calibration_examples) \
        if cfg.server.bn_mode in ("recalibrate", "local") else 0
    coordinator = forward_s * (bn + test_size / cfg.training.eval_every)
    round_s = waves * (steps * step.step_s + step.overhead_s) + coordinator
    rounds = max(0, cfg.training.rounds - rounds_done)
    receivers = max(1, min(workers, tasks))
    per_round_down = receivers * payload_bytes["broadcast"]
    if cfg.data.mode == "shipped":
        per_round_down += tasks * (train_size // cfg.partition.num_clients) * example_bytes
    first_extra = receivers * (payload_bytes["full"] - payload_bytes["broadcast"]) \
        if cfg.server.broadcast == "delta" and rounds_done == 0 and rounds else 0
    compile_s = step.compile_s if rounds else 0.0
    return Estimate(wall_s=compile_s + rounds * round_s, compile_s=compile_s, round_s=round_s,
                    rounds=rounds, bytes_down=int(rounds * per_round_down + first_extra),
                    bytes_up=int(rounds * tasks * payload_bytes["update"]),
                    tasks_per_round=tasks, steps_per_task=steps, parallel=parallel, step=step)


def payload_bytes(cfg, variables: dict) -> dict:
    """Bytes of one full broadcast, one encoded broadcast and one encoded client update of
    ``variables`` (the model's initial variables), through the config's codecs."""
    from fedjax_grid.compression import encode, payload_nbytes, tree_nbytes_float32
    rng = np.random.default_rng(0)
    params = variables["params"]
    full = tree_nbytes_float32(variables)
    extra = full - tree_nbytes_float32(params)   # BatchNorm statistics travel uncompressed
    spec_b = cfg.server.broadcast_codec.model_dump()
    spec_u = cfg.server.codec.model_dump()
    broadcast = payload_nbytes(encode(spec_b, params, rng)[0]) + extra
    update = payload_nbytes(encode(spec_u, params, rng)[0]) + extra
    return {"full": int(full), "broadcast": int(broadcast), "update": int(update)}


# -- measuring a step ---------------------------------------------------------------------
def _cache_path() -> pathlib.Path:
    from fedjax_grid.training.compile_cache import default_cache_dir
    return pathlib.Path(default_cache_dir()).parent / CACHE_FILE


def step_key(model_key: tuple, image_shape, hparams) -> str:
    """The cache key of a measured step: model, input, batch, optimiser, JAX, host."""
    import jax
    return json.dumps([repr(model_key), list(image_shape), hparams.batch_size, hparams.optimizer,
                       bool(hparams.augment), jax.__version__, jax.default_backend(),
                       socket.gethostname(), os.cpu_count()])


def _timed(model, variables, images, labels, hparams) -> float:
    from fedjax_grid.training import local_train
    t0 = time.perf_counter()
    out, _ = local_train(model, variables, (images, labels), hparams, 0)
    import jax
    jax.block_until_ready(out)
    return time.perf_counter() - t0


def measure_step(model, variables: dict, image_shape, num_classes: int, hparams) -> StepTime:
    """Time the run's jit-compiled local step here: compile, seconds per step, overhead.

    Random uint8 images of ``image_shape`` (H, W, C) in batches of ``hparams.batch_size``;
    one local epoch over 2 batches and over ``n`` batches (``n`` sized to take about
    1.5 s, 6 to 64), the faster of 3 tries each: the step is their difference / (n - 2),
    the per-task overhead what remains of the 2-batch task."""
    import dataclasses as dc
    hp = dc.replace(hparams, epochs=1)
    b = hp.batch_size
    rng = np.random.default_rng(0)
    first = None

    def task(n: int) -> float:
        images = rng.integers(0, 256, size=(n * b, *image_shape), dtype=np.uint8)
        labels = rng.integers(0, num_classes, size=n * b).astype(np.int32)
        return _timed(model, variables, images, labels, hp)

    first = task(2)
    t_small = min(task(2) for _ in range(3))
    n = int(min(64, max(6, 2 + 1.5 / max(t_small / 2, 1e-4))))
    t_large = min(task(n) for _ in range(3))
    step_s = max((t_large - t_small) / (n - 2), t_large / n / 10, 1e-6)
    return StepTime(step_s=step_s, overhead_s=max(0.0, t_small - 2 * step_s),
                    compile_s=max(0.0, first - t_small), where=socket.gethostname(),
                    measured_at=time.time())


def cached_step(key: str) -> Optional[StepTime]:
    try:
        entry = json.loads(_cache_path().read_text()).get(key)
        return None if entry is None else StepTime(**{**entry, "cached": True})
    except (OSError, ValueError, TypeError):
        return None


def store_step(key: str, step: StepTime) -> None:
    """Remember a measured step on this machine (atomic, under a file lock)."""
    from filelock import FileLock

    from fedjax_grid.atomic_write import atomic_path
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=10):
            try:
                table = json.loads(path.read_text())
            except (OSError, ValueError):
                table = {}
            table[key] = {k: v for k, v in dataclasses.asdict(step).items() if k != "cached"}
            with atomic_path(path, fsync=False) as tmp:
                pathlib.Path(tmp).write_text(json.dumps(table, indent=1))
    except (OSError, TimeoutError):
        pass   # an estimate without a cache still works; it is measured again next time


#: Step keys measured in this process -> the compile time of their first measurement.
_MEASURED_HERE: dict = {}


def step_time(model_key: tuple, model, variables: dict, image_shape, num_classes: int,
              hparams, *, remeasure: bool = False) -> StepTime:
    """The cached step of this model on this machine, else a new measurement (cached)."""
    key = step_key(model_key, image_shape, hparams)
    if not remeasure:
        hit = cached_step(key)
        if hit is not None:
            return hit
    step = measure_step(model, variables, image_shape, num_classes, hparams)
    if key in _MEASURED_HERE:   # compiled in this process before: keep the first compile time
        step = dataclasses.replace(step, compile_s=_MEASURED_HERE[key])
    _MEASURED_HERE[key] = step.compile_s
    store_step(key, step)
    return step


def _worker_step(model_key: tuple, variables: dict, image_shape, num_classes: int, hparams,
                 remeasure: bool) -> dict:
    """Dask task: ``step_time`` on a worker (its own cache and cores)."""
    from fedjax_grid.models import cached_model
    return dataclasses.asdict(step_time(model_key, cached_model(*model_key), variables,
                                        image_shape, num_classes, hparams, remeasure=remeasure))


def estimate_run(run, *, grid=None, remeasure: bool = False) -> Estimate:
    """The estimate of a built ``FederatedRun`` (data and model loaded, its grid not needed):
    its step measured on one of ``grid``'s workers when an open grid is given, else here."""
    return _estimate_parts(run.config, train_size=len(run.train), test_size=len(run.test_arrays[1]),
                           info=run.train.info, model_key=run.model_key, model=run.model,
                           variables=run.global_variables, hparams=run.hparams,
                           rounds_done=run.round, grid=grid, remeasure=remeasure)


def estimate_config(cfg, *, grid=None, remeasure: bool = False) -> Estimate:
    """The estimate of a config not started yet: its data and model are built here (as a
    run builds them), nothing is written."""
    from fedjax_grid.experiments.build import build_data, build_experiment
    from fedjax_grid.federated.server import server_variables
    data = build_data(cfg)
    exp = build_experiment(cfg, data=data)
    state, _ = exp.initial_state()
    return _estimate_parts(cfg, train_size=len(data.train), test_size=len(data.test_arrays[1]),
                           info=data.info, model_key=exp.model_key, model=exp.model,
                           variables=server_variables(state), hparams=exp.hparams,
                           rounds_done=0, grid=grid, remeasure=remeasure)


def _estimate_parts(cfg, *, train_size, test_size, info, model_key, model, variables, hparams,
                    rounds_done, grid, remeasure) -> Estimate:
    workers = cfg.grid.workers
    shape = tuple(info.image_shape)
    if grid is not None and not getattr(grid, "closed", False) and grid.workers():
        workers = len(grid.workers())
        fut = grid.client.submit(_worker_step, model_key, variables, shape, info.num_classes,
                                 hparams, remeasure, pure=False)
        step = StepTime(**fut.result(timeout=900))
    else:
        step = step_time(model_key, model, variables, shape, info.num_classes, hparams,
                         remeasure=remeasure)
    example = int(np.prod(shape)) + 8   # uint8 image + its label
    return estimate(cfg, train_size=train_size, example_bytes=example,
                    payload_bytes=payload_bytes(cfg, variables), step=step, workers=workers,
                    rounds_done=rounds_done, test_size=test_size)
