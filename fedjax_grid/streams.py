"""Named random streams: the one table of what every random draw of a run is seeded by.

Every numpy generator of a run is ``np.random.default_rng([seed, STREAM, *words])``:
the experiment's ``seed``, the number of the stream the draw belongs to, then what
keys the draw (round or task number, client, attempt). Distinct stream numbers keep
the draws of different purposes independent -- a client's link never moves with its
sampling, a fault plan never with the forming of local sets -- and a run and its
resume draw exactly the same numbers. Local training keys are JAX keys
(:func:`client_key`: ``fold_in`` of round, client and attempt into ``PRNGKey(seed)``).

=====================  ======  ======================================================
stream                 number  draws
=====================  ======  ======================================================
``speed``              1       a client's fixed slow-down (faults)
``availability``       2       whether a client is offline in a round (faults)
``task_faults``        3       a task's delay, drop-out, corruption, hang (faults)
``hostile``            4       which clients are hostile (faults)
``sampling``           7       the clients of a synchronous round
``forming``            11      the local sets of a round (forming strategy)
``bn_calibration``     13      the training examples BatchNorm is re-estimated on
``async_draw``         17      the client of an asynchronous task
``upload_codec``       23      a client's stochastic rounding of its update (int8, quant)
``broadcast_codec``    29      the stochastic rounding of the broadcast model
``link``               31      a client's link quality and latency (link models)
``attack``             37      a hostile client's random update (the ``random`` attack)
``partition``          0x5EED  a partition's first draw (forming strategies' init)
=====================  ======  ======================================================

Two numbers changed when this table was made (results of runs without those features
are bitwise unchanged): ``link`` was 7, the same as ``sampling`` (a client's link was
correlated with the round-0 sampling draw), so runs with ``faults.link`` other than
``none`` give each client a different (still seeded) link than before; ``attack`` had no
stream (its generator was ``[seed, round, client]``, which collides with e.g.
``[seed, 7, round]`` of sampling), so runs with the ``random`` attack draw other noise.
"""
from __future__ import annotations

import numpy as np

#: stream name -> its number (see the module docstring); every number is distinct
STREAMS: dict[str, int] = {
    "speed": 1,
    "availability": 2,
    "task_faults": 3,
    "hostile": 4,
    "sampling": 7,
    "forming": 11,
    "bn_calibration": 13,
    "async_draw": 17,
    "upload_codec": 23,
    "broadcast_codec": 29,
    "link": 31,
    "attack": 37,
    "grid_schedule": 41,   # an emulated grid's availability schedule (emulation/schedule.py)
    "worker_speed": 43,    # faults.slow_by=worker: a worker's slow-down, keyed by its name
    "partition": 0x5EED,
}

SPEED = STREAMS["speed"]
AVAILABILITY = STREAMS["availability"]
TASK_FAULTS = STREAMS["task_faults"]
HOSTILE = STREAMS["hostile"]
SAMPLING = STREAMS["sampling"]
FORMING = STREAMS["forming"]
BN_CALIBRATION = STREAMS["bn_calibration"]
ASYNC_DRAW = STREAMS["async_draw"]
UPLOAD_CODEC = STREAMS["upload_codec"]
BROADCAST_CODEC = STREAMS["broadcast_codec"]
LINK = STREAMS["link"]
ATTACK = STREAMS["attack"]
GRID_SCHEDULE = STREAMS["grid_schedule"]
WORKER_SPEED = STREAMS["worker_speed"]
PARTITION = STREAMS["partition"]


def rng(seed: int, stream: int, *words: int) -> np.random.Generator:
    """``np.random.default_rng([seed, stream, *words])``: the generator of one draw."""
    return np.random.default_rng([int(seed), int(stream), *(int(w) for w in words)])


def client_key(seed: int, round_: int, client: int, attempt: int = 0):
    """The JAX PRNG key of client ``client``'s local training in 0-based round (or
    asynchronous task) ``round_`` (``attempt``: its retry number): ``fold_in`` of each
    into ``PRNGKey(seed)``."""
    import jax
    key = jax.random.PRNGKey(int(seed))
    for word in (round_, client, attempt):
        key = jax.random.fold_in(key, int(word))
    return key
