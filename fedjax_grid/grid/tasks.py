"""The client task: what one desktop node runs for one client in one round.

``client_update(global_variables, spec)`` is a module-level function (so Dask
pickles it by reference and the JAX steps it calls stay compiled in the worker
process between rounds). ``spec`` is a plain dict (built by the engine,
``RunContext.task_spec``); the result is a plain dict with the client's
variables as numpy arrays.

Module-level caches on each worker: the Flax model per (name, classes, kwargs)
and, in ``resident`` data mode, the prepared data set per source, opened once
per process. The fault plan, when any, is applied here on the real worker.
"""
from __future__ import annotations

import functools
import os
import socket
import threading
import time
from collections.abc import Mapping

import numpy as np
from dask.sizeof import sizeof as dask_sizeof

from fedjax_grid import streams, version
from fedjax_grid.failures import SimulatedDropout
from fedjax_grid.federated.client_algorithms import local_run
from fedjax_grid.federated.tree_math import np_tree_sub


class TaskCancelled(RuntimeError):
    """The coordinator cancelled this task (e.g. the round's deadline passed)."""


@functools.lru_cache(maxsize=4)
def resident_dataset(source: str, path, data_dir, options: tuple):
    """The worker's own copy of the training split, opened once per process."""
    from fedjax_grid.data import load_source
    return load_source(source, "train", path=path, data_dir=data_dir, **dict(options))


def _worker_name() -> str:
    try:
        from distributed import get_worker
        return get_worker().address
    except (ValueError, ImportError):
        return f"local:{socket.gethostname()}:{os.getpid()}"


def _worker_label() -> str:
    """The worker's ``--name`` ('' when none was given: Dask then names it by its address)."""
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ValueError, ImportError):
        return ""
    return worker_label(worker.name, worker.address)


def worker_label(name, address: str) -> str:
    """A worker's name for people: its ``--name``, or '' when it has none (name == address)."""
    name = "" if name is None else str(name)
    return "" if name in ("", str(address)) else name


def _cancelled() -> bool:
    """True when the coordinator released or cancelled the running task."""
    try:
        from distributed import get_worker
        from distributed.worker import thread_state
        worker = get_worker()
        key = getattr(thread_state, "key", None)
    except (ValueError, ImportError):
        return False
    if key is None:
        return False
    ts = worker.state.tasks.get(key)
    return ts is None or ts.state in ("cancelled", "released", "forgotten")


def raise_if_cancelled() -> None:
    """Raise ``TaskCancelled`` when the coordinator cancelled this task (checked between
    training steps: a Stop frees the worker within one step, not after the epochs)."""
    if _cancelled():
        raise TaskCancelled("cancelled by the coordinator")


def interruptible_sleep(seconds: float, step: float = 0.05) -> None:
    """Sleep ``seconds``; raise ``TaskCancelled`` as soon as the task is cancelled."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        if _cancelled():
            raise TaskCancelled("cancelled by the coordinator")
        time.sleep(min(step, left))


def client_update(global_variables, spec: dict, shipped: dict | None = None) -> dict:
    """Train one client's local model from the global variables.

    global_variables: {'params': ..., 'batch_stats'?: ...} of numpy arrays.
    spec: built by ``RunContext.task_spec`` (round, client, attempt, seed,
    model key, hparams, standardisation, fault plan, data description).
    shipped: in ``shipped`` mode, {'images': uint8 (n, H, W, C), 'labels': int32 (n,)}.
    global_variables may also be a broadcast payload (``server.broadcast_codec``,
    :func:`fedjax_grid.compression.broadcast_payload`): it is decoded here and the
    client trains from -- and takes its delta against -- the decoded weights it actually
    received; the coordinator folds the delta into its exact parameters.
    Returns {'update', 'codec_state', 'batch_stats', 'num_examples', 'metrics', 'worker'
    (address), 'worker_name' (its --name or ''), 'start', 'end', 'train_s', 'transfer_s',
    'plan', 'bn_moments', 'held_version', 'compile_s'}: 'update' is the codec payload
    (``spec['codec']``) of the
    client's params minus the params it received (the coordinator decodes it with
    ``fedjax_grid.compression.decode``), 'codec_state' the codec's new state for this
    client (the top-k residual; None for stateless codecs), 'batch_stats' its final
    BatchNorm statistics (None without BatchNorm); 'transfer_s' the simulated link time
    slept (``spec['link']``, download + upload, 0 without a link); times are
    wall-clock times in seconds since the epoch (worker clock); 'bn_moments' is
    ``(moments, count)`` of the final local model over the client's data
    (``training.bn_stats.bn_moments``) when the spec asks for it (``spec['bn_moments']``)
    and the model has BatchNorm, else None; 'held_version' the broadcast version this
    worker now holds (``server.broadcast='delta'``, else None); 'algorithm_state' the
    client algorithm's new state for this client (``spec['algorithm']``, from the state
    and server state in ``spec['algorithm_payload']``; None for fedavg); 'compile_s' the
    seconds this task spent compiling (``training.compile_meter``; 0 once compiled here),
    'compile_spans' when: ``[(start, end), ...]`` in seconds since the epoch (worker clock).
    """
    from fedjax_grid.training.compile_meter import compile_seconds, compile_spans
    start, compiled0 = time.time(), compile_seconds()
    _check_versions(spec)
    plan = _worker_plan(spec.get("plan") or {}, spec)
    if plan.get("delay_s"):
        interruptible_sleep(plan["delay_s"])
    global_variables, down_s, held_version = _receive(global_variables, spec)
    if spec.get("batch_stats") is not None:  # bn_mode='local': the client's own statistics
        global_variables = dict(global_variables, batch_stats=spec["batch_stats"])
    algorithm, payload = _client_algorithm(spec), spec.get("algorithm_payload")
    variables, metrics, moments, train_s = _train(global_variables, spec, shipped,
                                                  algorithm.local_offset(payload))
    # the delta against the (possibly lossy) weights this desktop received and trained from
    delta = np_tree_sub(variables["params"], global_variables["params"])
    algorithm_state = algorithm.client_finish(payload, delta, local_run(spec["hparams"], metrics))
    delta, batch_stats, moments = _simulate_faults(plan, spec, delta,
                                                   variables.get("batch_stats"), moments, train_s)
    update, codec_state, up_s = _send(delta, batch_stats, spec)
    return TaskResult({"update": update, "codec_state": codec_state, "batch_stats": batch_stats,
                       "num_examples": int(metrics["num_examples"]),
                       "metrics": metrics, "worker": _worker_name(), "worker_name": _worker_label(),
                       "start": start, "end": time.time(), "transfer_s": down_s + up_s,
                       "train_s": train_s, "plan": plan, "bn_moments": moments,
                       "held_version": held_version, "algorithm_state": algorithm_state,
                       "compile_s": compile_seconds() - compiled0,
                       "compile_spans": compile_spans(start)})


class TaskResult(dict):
    """A client task's result (a dict) whose size Dask knows exactly.

    Dask's ``sizeof`` samples at most 10 items of a list: for the leaves of an update's
    payload it guessed 0.02 MB for a 2.3 MB float32 update. The scheduler's ``nbytes`` of
    the task is what the coordinator sizes the result's fetch by (``grid.fetch``), so it is
    counted here: every array's bytes (``compression.payload_nbytes``), plus 4 KiB of framing.
    """


@dask_sizeof.register(TaskResult)
def _result_nbytes(result: TaskResult) -> int:
    from fedjax_grid.compression import payload_nbytes
    return int(payload_nbytes(dict(result))) + 4096


def _client_algorithm(spec: dict):
    """The task's client algorithm (``spec['algorithm']``; fedavg when absent)."""
    from fedjax_grid.federated.client_algorithms import make_client_algorithm
    return make_client_algorithm(spec.get("algorithm") or "fedavg")


def _link(spec: dict):
    """The task's simulated link (``spec['link']``: a LinkModel dict) or None."""
    from fedjax_grid.hazards.links import LinkModel
    return LinkModel(**spec["link"]) if spec.get("link") else None


#: server.broadcast='delta': this worker's copies of each run's broadcast reference,
#: run id -> {version: variables}: the newest _HELD_VERSIONS versions (asynchronous
#: rounds run tasks of a few versions at once) of the newest _HELD_RUNS runs.
_HELD: dict[str, dict] = {}
_HELD_LOCK = threading.Lock()
_HELD_RUNS = 2
_HELD_VERSIONS = 3


def _from_chain(payload: dict) -> tuple:
    """``(version, variables)``: this worker's copy brought to the payload's version."""
    from fedjax_grid.compression.chain import apply_chain
    run = payload.get("run", "")
    with _HELD_LOCK:
        copies = _HELD.pop(run, {})
        version, variables = apply_chain(payload, copies)
        copies[version] = variables
        for old in sorted(copies)[:-_HELD_VERSIONS]:
            del copies[old]
        _HELD[run] = copies
        while len(_HELD) > _HELD_RUNS:
            _HELD.pop(next(iter(_HELD)))
    return version, variables


def _receive(global_variables, spec: dict) -> tuple:
    """``(variables, download seconds, version held)``: a broadcast payload
    (``server.broadcast_codec``) decoded into the variables this client trains from,
    after sleeping the simulated download time of what was received (``faults.link``;
    with ``server.broadcast='delta'`` the bytes this client downloads,
    ``spec['download_nbytes']``). The version is None unless the broadcast is a chain."""
    from fedjax_grid.compression import apply_broadcast, payload_nbytes
    encoded = isinstance(global_variables, dict) and "broadcast" in global_variables
    link, seconds = _link(spec), 0.0
    if link is not None:
        nbytes = spec.get("download_nbytes")
        if nbytes is None:
            nbytes = payload_nbytes(global_variables) if encoded else tree_nbytes(global_variables)
        seconds = link.download_seconds(nbytes)
        interruptible_sleep(seconds)
    version = None
    if encoded and global_variables["broadcast"] == "chain":
        version, global_variables = _from_chain(global_variables)
    elif encoded:
        global_variables = apply_broadcast(global_variables, None)
    return global_variables, seconds, version


def _send(delta, batch_stats, spec: dict) -> tuple:
    """``(payload, codec state, upload seconds)``: the delta encoded with the task's codec
    (``spec['codec']``, rng seeded from (seed, round, client, attempt), the client's
    error-feedback state from ``spec['codec_state']``), after sleeping the simulated upload
    time of the payload and the BatchNorm statistics."""
    from fedjax_grid.compression import make_codec, payload_nbytes
    codec = make_codec(spec.get("codec") or "none")
    rng = streams.rng(spec["seed"], streams.UPLOAD_CODEC, spec["round"], spec["client"],
                      spec["attempt"])
    state = spec.get("codec_state")
    if state is not None:  # read back from a checkpoint: key order may differ from the delta's
        state = {"residual": ordered_like(delta, state["residual"])}
    payload, state = codec.encode(delta, rng, state)
    link, seconds = _link(spec), 0.0
    if link is not None:
        seconds = link.upload_seconds(payload_nbytes(payload) + tree_nbytes(batch_stats))
        interruptible_sleep(seconds)
    return payload, state, seconds


def ordered_like(template, tree):
    """``tree`` with ``template``'s mapping key order (codecs pair a state's leaves with the
    update's in container order)."""
    if isinstance(template, Mapping):
        return {k: ordered_like(v, tree[k]) for k, v in template.items()}
    return tree


def tree_nbytes(tree) -> int:
    """Bytes of the array leaves of ``tree`` (0 for None)."""
    import jax
    return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree)))


def _check_versions(spec: dict) -> None:
    """``VersionMismatch`` unless the task and this worker run the same versions."""
    from fedjax_grid.grid.plugin import VersionMismatch, check_version
    if spec["version"] != version.__version__:
        raise VersionMismatch(f"worker runs fedjax_grid {version.__version__}, "
                              f"task needs {spec['version']}")
    check_version()


def _task_data(spec: dict, shipped: dict | None) -> tuple:
    """``(train_data, indices)``: the shipped arrays, or the worker's resident copy and
    the client's indices into it."""
    data = spec["data"]
    if data["mode"] == "shipped":
        return (shipped["images"], shipped["labels"]), None
    ds = resident_dataset(data["source"], data["path"], data["data_dir"], data["options"])
    return ds, data["indices"]


def _train(global_variables, spec: dict, shipped: dict | None, grad_offset=None) -> tuple:
    """Local training as the spec says: ``(variables as numpy, metrics, bn_moments or None,
    train_s)``; train_s: seconds of training and moments, without model and data set-up.
    ``grad_offset``: the client algorithm's correction of every gradient (None: none)."""
    import jax
    from fedjax_grid.models import cached_model
    from fedjax_grid.training import HParams, Standardize, local_train
    model = cached_model(*spec["model"])
    train_data, indices = _task_data(spec, shipped)
    hp = HParams(**spec["hparams"])
    key = streams.client_key(spec["seed"], spec["round"], spec["client"], spec["attempt"])
    preprocess = Standardize(mean=tuple(spec["mean"]), std=tuple(spec["std"]))
    t0 = time.perf_counter()
    variables, metrics = local_train(
        model, global_variables, train_data, hp, key, indices=indices, preprocess=preprocess,
        anchor_params=global_variables["params"] if hp.prox_mu > 0 else None,
        grad_offset=grad_offset, interrupt=raise_if_cancelled)
    variables = jax.tree.map(np.asarray, variables)
    moments = None
    if spec.get("bn_moments") and "batch_stats" in variables:
        from fedjax_grid.training.bn_stats import bn_moments
        moments = bn_moments(model, variables, train_data, hp.batch_size, indices=indices,
                             preprocess=preprocess)
    return variables, metrics, moments, time.perf_counter() - t0


def _worker_plan(plan: dict, spec: dict) -> dict:
    """The plan with this worker's speed factor when the slow-down belongs to the workers
    (``faults.slow_by: worker``, ``plan['worker_max_slowdown'] > 1``): drawn from the run's
    seed and the worker's name (its address when it has none); the plan as given otherwise."""
    top = float(plan.get("worker_max_slowdown") or 0.0)
    if top <= 1.0:
        return plan
    from fedjax_grid.hazards.faults import worker_speed_factor
    name = _worker_label() or _worker_name()
    return dict(plan, speed_factor=worker_speed_factor(top, int(spec["seed"]), name))


def _simulate_faults(plan: dict, spec: dict, delta, batch_stats, moments, train_s: float):
    """Apply the task's fault plan after training: slow-down and hang (sleeps), drop-out
    (raises ``SimulatedDropout``), corrupt (NaN) or hostile updates (the delta
    manipulated, ``attack_delta``). Returns ``(delta, batch_stats, moments)``."""
    import jax
    if plan.get("speed_factor", 1.0) > 1.0:
        interruptible_sleep(train_s * (plan["speed_factor"] - 1.0))
    if plan.get("hang_s"):
        interruptible_sleep(plan["hang_s"])
    if plan.get("dropout"):
        raise SimulatedDropout(f"client {spec['client']} dropped out (simulated)")
    if plan.get("corrupt"):
        nan = lambda t: jax.tree.map(lambda a: np.full_like(a, np.nan), t)  # noqa: E731
        delta, moments = nan(delta), None
        batch_stats = None if batch_stats is None else nan(batch_stats)
    if plan.get("attack"):
        from fedjax_grid.hazards.faults import attack_delta
        delta = attack_delta(plan["attack"], plan.get("attack_params") or {"scale": plan["attack_scale"]},
                             delta, seed=(spec["seed"], spec["round"], spec["client"]))
    return delta, batch_stats, moments


def attack_params(kind: str, scale: float, params, global_params, seed=()):
    """A hostile client's params: ``global_params + attack(params - global_params)`` for an
    attack with a ``scale`` parameter (see :mod:`fedjax_grid.hazards.faults`)."""
    import jax
    from fedjax_grid.hazards.faults import attack_delta
    delta = jax.tree.map(lambda w, g: np.asarray(w, np.float32) - g, params, global_params)
    new = attack_delta(kind, {"scale": scale}, delta, seed)
    return jax.tree.map(lambda g, d: (g + d).astype(np.asarray(g).dtype), global_params, new)
