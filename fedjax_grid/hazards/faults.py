"""Heterogeneity and fault simulation: pure, seeded plans applied inside real tasks.

A ``FaultPlan`` is drawn on the coordinator from (seed, round, client, attempt)
alone, so a run and its resume draw the same plans, and it is recorded per task.
The task that receives it (``grid.tasks``) applies it on the real worker: it
sleeps to emulate a slow or delayed desktop, raises to emulate a drop-out,
returns a corrupted (NaN) update to emulate a faulty node, or hangs.

- speed factor: per client (``slow_by: client``) or per worker (``slow_by: worker``: drawn
  on the worker from its name, :func:`worker_speed_factor`), fixed for the whole run,
  log-uniform in [1, max_slowdown]; the task sleeps (factor - 1) x its training time.
- availability: per (client, round), offline with probability offline_prob;
  offline clients are not sent a task at all (status ``offline``).
- delay: uniform in [0, max_delay_s] seconds, per task.
- dropout / error / hang: per task, with their probabilities.
- attack: a fixed set of round(attack_fraction x C) hostile clients (chosen by
  seed) send a manipulated update: scaled, sign-flipped or random noise.

Attacks are registered in ``ATTACKS`` with their typed parameters; the config
chooses one as ``faults.attack: {name: scale, scale: 10}``. An attack is a
function ``fn(delta, rng, params) -> manipulated delta`` over the honest
update's params delta (a pytree of float32 numpy arrays; ``rng`` a numpy
Generator seeded by (seed, round, client)); the task applies it on the worker
(:func:`attack_delta`).
"""
from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Mapping

import numpy as np
from pydantic import Field

from fedjax_grid import streams
from fedjax_grid.registry import Params, Registry

#: Attacks of hostile clients: ``fn(delta, rng, params) -> delta``.
ATTACKS = Registry("attack")


class ScaleParams(Params):
    scale: float = Field(10.0, ge=0.0, le=1e6, description="multiple of the honest update (or of its norm)")


def _tree_map(fn, tree):
    import jax
    return jax.tree.map(fn, tree)


def _tree_norm(tree) -> float:
    from fedjax_grid.federated.tree_math import np_tree_l2_norm
    return np_tree_l2_norm(tree)


@ATTACKS.register("scale", ScaleParams)
def scale_attack(delta, rng, params):
    """The honest update multiplied by scale."""
    return _tree_map(lambda d: params.scale * d, delta)


@ATTACKS.register("signflip", ScaleParams)
def signflip_attack(delta, rng, params):
    """The honest update multiplied by -scale."""
    return _tree_map(lambda d: -params.scale * d, delta)


@ATTACKS.register("random", ScaleParams)
def random_attack(delta, rng, params):
    """Gaussian noise with scale x the honest update's global L2 norm."""
    noise = _tree_map(lambda d: rng.standard_normal(d.shape).astype(np.float32), delta)
    factor = params.scale * _tree_norm(delta) / max(_tree_norm(noise), 1e-12)
    return _tree_map(lambda z: factor * z, noise)


def attack_delta(kind: str, params: Mapping, delta, seed=()):
    """A hostile client's update: the honest params ``delta`` manipulated by the attack
    ``kind`` with its ``params`` (leaves keep their dtype); ``seed`` = (seed, round, client)
    keys the attack's Generator (stream ``attack``, :mod:`fedjax_grid.streams`)."""
    import jax
    rng = streams.rng(seed[0], streams.ATTACK, *seed[1:]) if len(seed) else np.random.default_rng()
    new = ATTACKS.build({"name": kind, **params}, delta, rng)
    return jax.tree.map(lambda d, n: np.asarray(n, np.asarray(d).dtype), delta, new)


@dataclasses.dataclass(frozen=True)
class FaultPlan:
    speed_factor: float = 1.0
    #: > 1: the slow-down belongs to the worker (``slow_by: worker``): the task draws its
    #: factor from this maximum, the run's seed and its worker's name; speed_factor is then 1.
    worker_max_slowdown: float = 0.0
    offline: bool = False
    delay_s: float = 0.0
    dropout: bool = False
    corrupt: bool = False
    hang_s: float = 0.0
    #: '' for an honest client, else the attack's name ('scale' | 'signflip' | 'random' | ...).
    attack: str = ""
    #: The attack's ``scale`` parameter (0.0 when honest or when it has none).
    attack_scale: float = 0.0
    #: All the attack's parameters ({} for an honest client).
    attack_params: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


NO_FAULTS = FaultPlan()


def _log_uniform(top: float, rng: np.random.Generator) -> float:
    """One draw log-uniform in [1, top] (1.0 when top <= 1)."""
    if top <= 1.0:
        return 1.0
    return float(math.exp(rng.random() * math.log(top)))


def speed_factor(faults, seed: int, client: int) -> float:
    """Fixed slow-down of a client (>= 1), log-uniform in [1, faults.max_slowdown]; 1.0 when
    the slow-down belongs to the workers (``faults.slow_by == 'worker'``)."""
    if not faults.enabled or faults.slow_by == "worker":
        return 1.0
    return _log_uniform(faults.max_slowdown, streams.rng(seed, streams.SPEED, client))


def worker_speed_factor(max_slowdown: float, seed: int, worker: str) -> float:
    """Fixed slow-down of the worker named ``worker`` (>= 1), log-uniform in [1, max_slowdown],
    keyed by the run's seed and the CRC-32 of the name: the same desktop is as slow in every
    task, round and resume of a run."""
    return _log_uniform(max_slowdown, streams.rng(seed, streams.WORKER_SPEED,
                                                  zlib.crc32(str(worker).encode())))


def is_offline(faults, seed: int, round_: int, client: int) -> bool:
    if not faults.enabled or faults.offline_prob <= 0:
        return False
    return bool(streams.rng(seed, streams.AVAILABILITY, round_, client).random() < faults.offline_prob)


def hostile_clients(faults, seed: int, num_clients: int) -> frozenset:
    """The fixed set of round(attack_fraction x num_clients) hostile clients."""
    if not faults.enabled or faults.attack_fraction <= 0:
        return frozenset()
    n = int(round(faults.attack_fraction * num_clients))
    perm = streams.rng(seed, streams.HOSTILE).permutation(num_clients)
    return frozenset(int(k) for k in perm[:n])


def fault_plan(faults, seed: int, round_: int, client: int, attempt: int = 0,
               num_clients: int | None = None) -> FaultPlan:
    """The plan of one task; ``faults`` is a ``FaultConfig``. Pure and deterministic.

    num_clients: C, needed to place hostile clients when ``attack_fraction > 0``.
    """
    if not faults.enabled:
        return NO_FAULTS
    hostile = num_clients is not None and client in hostile_clients(faults, seed, num_clients)
    rng = streams.rng(seed, streams.TASK_FAULTS, round_, client, attempt)
    u_delay, u_drop, u_err, u_hang = rng.random(4)
    return FaultPlan(
        speed_factor=speed_factor(faults, seed, client),
        worker_max_slowdown=float(faults.max_slowdown) if faults.slow_by == "worker" else 0.0,
        offline=is_offline(faults, seed, round_, client),
        delay_s=float(u_delay * faults.max_delay_s),
        dropout=bool(u_drop < faults.dropout_prob),
        corrupt=bool(u_err < faults.error_prob),
        hang_s=float(faults.hang_s) if u_hang < faults.hang_prob else 0.0,
        attack=faults.attack.name if hostile else "",
        attack_scale=float(faults.attack.params.get("scale", 0.0)) if hostile else 0.0,
        attack_params=dict(faults.attack.params) if hostile else {},
    )
