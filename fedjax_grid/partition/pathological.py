"""``pathological(k)``: every client holds examples of exactly k classes.

The classic pathological non-IID split (McMahan et al. 2017, "each client holds
examples of only two digits"), written as k classes per client. Definition, for
C clients and the K classes that have examples (k <= K):

1. Classes. The K classes are shuffled (seeded) and dealt round-robin over the C*k
   slots: client c holds the classes ``perm[(c*k + j) mod K]``, j = 0..k-1, which
   are k distinct classes. When C*k >= K every class is used and held by
   floor(C*k/K) or ceil(C*k/K) clients; when C*k < K only the first C*k classes of
   the permutation are used and the examples of the others stay unused.
2. Examples. The examples of each used class are shuffled and split among the
   clients holding it into parts whose sizes differ by at most one (the larger
   parts go to random holders).

So the local sets are disjoint, cover every example of every used class (the whole
data set when C*k >= K), and every client sees exactly k classes; their sizes
follow the class sizes and the number of holders of each class.
``info['home']`` (int64 (C, k)) holds each client's classes, and the forming
strategies keep each client's per-class counts over the rounds (``label_skewed``).
Unlike ``shards(k)`` (label-sorted shards, so a client may get one class or more
than k), the number of classes per client is exact. k > K, or a class with fewer
examples than clients holding it (one of them would get none), is a UserError.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from fedjax_grid.errors import UserError
from fedjax_grid.partition.distributions import DISTRIBUTIONS, class_pools
from fedjax_grid.registry import Params


class PathologicalParams(Params):
    k: int = Field(2, ge=1, le=100_000, description="classes per client")


def _present(labels: np.ndarray) -> np.ndarray:
    """The classes that have examples, ascending."""
    return np.flatnonzero(np.bincount(labels)) if labels.size else np.zeros(0, np.int64)


def _check(labels, num_clients, params):
    n, k = len(_present(labels)), params.k
    if k > n:
        raise UserError(f"pathological: k={k} classes per client exceeds the {n} classes "
                        "of the data set")


def client_classes(classes: np.ndarray, num_clients: int, k: int,
                   rng: np.random.Generator) -> np.ndarray:
    """int64 (C, k): the classes of each client, dealt round-robin over a shuffle of ``classes``."""
    perm = classes[rng.permutation(len(classes))]
    slots = (np.arange(num_clients)[:, None] * k + np.arange(k)[None, :]) % len(classes)
    return perm[slots].astype(np.int64)


@DISTRIBUTIONS.register("pathological", PathologicalParams, label_skewed=True, check=_check)
def pathological(labels, num_clients, rng, info, params):
    """Each client holds examples of exactly k classes (McMahan et al. 2017's pathological split)."""
    k = params.k
    home = client_classes(_present(labels), num_clients, k, rng)
    pools = class_pools(labels)
    parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for cls in np.unique(home):
        holders = np.flatnonzero((home == cls).any(axis=1))
        pool = rng.permutation(pools[cls])
        if len(pool) < len(holders):
            raise UserError(f"pathological({k}): class {int(cls)} has {len(pool)} examples for "
                            f"{len(holders)} clients holding it; allowed: fewer clients or a "
                            "larger k")
        sizes = np.full(len(holders), len(pool) // len(holders), np.int64)
        sizes[rng.choice(len(holders), len(pool) % len(holders), replace=False)] += 1
        for c, piece in zip(holders, np.split(pool, np.cumsum(sizes)[:-1])):
            parts[c].append(piece)
    info["home"] = home
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
