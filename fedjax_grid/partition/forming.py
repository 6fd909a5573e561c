"""The study's four ways of forming the clients' local sets over the rounds.

``make_strategy(name, labels, num_clients, dist_spec, keep=0.5) -> Strategy``;
``state = strategy.init(seed)``; every round
``assignments, state = strategy.apply(state, rng, round)``, where ``assignments``
is a list of C sorted int64 index arrays. ``apply`` is pure: it never mutates the
state it is given and returns a new one. ``rng`` is a ``np.random.Generator``, an
int seed, or None (then the round's generator is derived from the state's seed and
the round number, so a run restarted from a checkpoint redraws the same sets).

The state is a flat dict of numpy arrays and ints, so it round-trips through
``np.savez`` / ``np.load`` (0-d arrays coming back are accepted):

* ``seed``, ``round`` (last round applied, -1 before the first),
* ``indices`` (int64, all current local sets concatenated), ``offsets`` (int64
  (C+1,)): the last assignments (for ``static``: the split kept to the end),
* ``counts`` (int64 (C, K)): each client's label histogram in the round-0 split,
* ``sizes`` (int64 (C,)): each client's local set size,
* ``home`` (int64 (C, m), ``balanced`` only): the clients' home classes.

Strategies (the first ``apply`` of every strategy except ``stochastic`` returns the
round-0 split drawn by ``init``):

``static``
    one split at round 0, kept to the end.
``dynamic``
    a fresh disjoint split of the whole data set every round.
``stochastic``
    every round each client draws its d indices at random on its own: local sets
    may overlap between clients, never within one.
``hybrid(keep)``
    each client keeps ``round(keep * d_c)`` random indices of its previous local
    set and draws the rest from the indices no client keeps this round, so local
    sets stay disjoint. (A client may redraw an index it just dropped, so its
    overlap with the previous round is *at least* the kept fraction.)

Redrawing follows the distribution type. For ``iid`` and ``quantity`` only the
client sizes are fixed (labels redrawn IID). For the label-skewed kinds
(``balanced``, ``dirichlet``, ``shards``) each client's label histogram of the
round-0 split (``counts``) is fixed, so its home classes / Dirichlet proportions /
shard classes stay the same across rounds and only which samples fill them
changes; class pools are used without replacement, so this is always feasible.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from fedjax_grid.errors import UserError
from fedjax_grid.partition.distributions import (
    Distribution, as_rng, check_request, class_pools, count_matrix, deal_counts,
    distribute, parse_distribution, split_by_sizes)

STRATEGIES = ("static", "dynamic", "stochastic", "hybrid")


def pack(assignments) -> tuple[np.ndarray, np.ndarray]:
    """List of index arrays -> (indices int64 concatenated, offsets int64 (C+1,))."""
    sizes = [len(a) for a in assignments]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    indices = (np.concatenate(assignments) if assignments else np.zeros(0)).astype(np.int64)
    return indices, offsets


def unpack(indices: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Inverse of :func:`pack` (copies, so callers cannot alias the state)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    return [indices[offsets[i]:offsets[i + 1]].copy() for i in range(len(offsets) - 1)]


@dataclasses.dataclass(frozen=True, eq=False)
class Strategy:
    """A forming strategy over rounds; see the module docstring.

    name: one of ``STRATEGIES``; labels: int (D,); num_clients: C;
    dist: the distribution type; keep: kept fraction for ``hybrid``, in [0, 1].
    """
    name: str
    labels: np.ndarray
    num_clients: int
    dist: Distribution
    keep: float = 0.5

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if self.labels.size else 0

    def init(self, seed: int) -> dict:
        """Round-0 split and fixed per-client profile, drawn from ``seed``."""
        seed = int(seed)
        rng = np.random.default_rng([seed, 0x5EED])
        assignments, info = distribute(self.labels, self.num_clients, self.dist, rng, return_info=True)
        indices, offsets = pack(assignments)
        state = {
            "seed": seed,
            "round": -1,
            "indices": indices,
            "offsets": offsets,
            "counts": count_matrix(self.labels, assignments, self.num_classes),
            "sizes": np.diff(offsets),
        }
        if "home" in info:
            state["home"] = np.asarray(info["home"], dtype=np.int64)
        return state

    def apply(self, state: dict, rng, round: int) -> tuple[list[np.ndarray], dict]:
        """-> (assignments for ``round``, new state). ``state`` is left unchanged."""
        round = int(round)
        seed = int(state["seed"])
        rng = as_rng(np.random.default_rng([seed, round + 1]) if rng is None else rng)
        first = int(state["round"]) < 0
        previous = unpack(state["indices"], state["offsets"])
        if self.name == "static" or (first and self.name in ("dynamic", "hybrid")):
            assignments = previous
        elif self.name == "dynamic":
            assignments = self._fresh(state, rng)
        elif self.name == "stochastic":
            assignments = self._stochastic(state, rng)
        else:
            assignments = self._hybrid(state, previous, rng)
        new = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
        new["seed"], new["round"] = seed, round
        new["indices"], new["offsets"] = pack(assignments)
        return [a.copy() for a in assignments], new

    # -- redraws -----------------------------------------------------------
    def _by_counts(self) -> bool:
        return self.dist.label_skewed

    def _fresh(self, state, rng):
        counts = np.asarray(state["counts"], dtype=np.int64)
        if self._by_counts():
            return deal_counts(class_pools(self.labels, self.num_classes), counts, rng)
        return split_by_sizes(rng.permutation(self.labels.size), np.asarray(state["sizes"]))

    def _stochastic(self, state, rng):
        sizes = np.asarray(state["sizes"], dtype=np.int64)
        if not self._by_counts():
            return [np.sort(rng.choice(self.labels.size, int(s), replace=False)).astype(np.int64)
                    for s in sizes]
        counts = np.asarray(state["counts"], dtype=np.int64)
        pools = class_pools(self.labels, self.num_classes)
        out = []
        for row in counts:
            parts = [rng.choice(pools[k], int(n), replace=False) for k, n in enumerate(row) if n]
            out.append(np.sort(np.concatenate(parts) if parts else np.zeros(0)).astype(np.int64))
        return out

    def _hybrid(self, state, previous, rng):
        kept = []
        for a in previous:
            n_keep = int(round(self.keep * len(a)))
            kept.append(rng.choice(a, n_keep, replace=False) if n_keep else np.zeros(0, np.int64))
        held = np.zeros(self.labels.size, dtype=bool)
        for k in kept:
            held[k] = True
        free = np.flatnonzero(~held)
        if self._by_counts():
            counts = np.asarray(state["counts"], dtype=np.int64)
            kept_counts = count_matrix(self.labels, kept, self.num_classes)
            need = counts - kept_counts
            new = deal_counts(class_pools_of(self.labels, free, self.num_classes), need, rng)
        else:
            sizes = np.asarray(state["sizes"], dtype=np.int64)
            need = sizes - np.array([len(k) for k in kept], dtype=np.int64)
            new = split_by_sizes(rng.permutation(free), need)
        return [np.sort(np.concatenate([k, n])).astype(np.int64) for k, n in zip(kept, new)]


def class_pools_of(labels: np.ndarray, candidates: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """Per-class pools restricted to ``candidates`` (int64 indices)."""
    sub = class_pools(labels[candidates], num_classes)
    return [candidates[p] for p in sub]


def make_strategy(name: str, labels, num_clients: int, dist_spec="iid", *, keep: float = 0.5
                  ) -> Strategy:
    """Build a forming strategy.

    name: ``static``, ``dynamic``, ``stochastic``, ``hybrid`` or ``hybrid(0.7)``
    (the parenthesised value overrides ``keep``). dist_spec: :class:`Distribution`
    or its string form. Raises :class:`UserError` for bad names or impossible
    requests.
    """
    m = re.fullmatch(r"\s*([a-z]+)\s*(?:\(\s*([^)]*?)\s*\))?\s*", str(name))
    if not m or m.group(1) not in STRATEGIES:
        raise UserError(f"forming strategy {name!r} is unknown; allowed: {', '.join(STRATEGIES)}")
    name = m.group(1)
    if m.group(2):
        if name != "hybrid":
            raise UserError(f"forming strategy {name!r} takes no parameter, got {m.string!r}")
        try:
            keep = float(m.group(2))
        except ValueError:
            raise UserError(f"hybrid keep {m.group(2)!r} is not a number") from None
    keep = float(keep)
    if not 0.0 <= keep <= 1.0:
        raise UserError(f"hybrid keep={keep!r} is outside [0, 1]")
    spec = parse_distribution(dist_spec)
    labels = check_request(labels, num_clients, spec).copy()
    labels.setflags(write=False)
    return Strategy(name, labels, int(num_clients), spec, keep)
