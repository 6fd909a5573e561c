"""The study's four ways of forming the clients' local sets over the rounds.

``make_strategy(spec, labels, num_clients, dist_spec) -> Strategy`` (spec: ``'hybrid(0.3)'``,
``{name: hybrid, keep: 0.3}``, or a name with ``keep=`` for hybrid);
``state = strategy.init(seed)``; every round
``assignments, state = strategy.apply(state, rng, round)``, where ``assignments``
is a list of C sorted int64 index arrays. ``apply`` is pure: it never mutates the
state it is given and returns a new one. ``rng`` is a ``np.random.Generator``, an
int seed, or None (then the round's generator is the one a run uses: stream ``forming``
of :mod:`fedjax_grid.streams`, keyed by the state's seed and the round number, so a run
restarted from a checkpoint redraws the same sets).

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

Every strategy is registered in ``FORMING`` (``FORMING.register(name, Params)`` on a
function ``fn(strategy, state, previous, rng, params) -> list of C index arrays``
giving the next round's sets; meta ``redraw_first=True`` when the first ``apply``
redraws instead of returning ``init``'s split). A new strategy is one file in this
package; the :class:`Strategy` helpers ``fresh``, ``stochastic`` and
``class_pools_of`` are there to reuse.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
from pydantic import Field

from fedjax_grid import streams
from fedjax_grid.partition.distributions import (
    Distribution,
    as_rng,
    check_request,
    class_pools,
    count_matrix,
    deal_counts,
    distribute,
    parse_distribution,
    split_by_sizes,
)
from fedjax_grid.registry import Choice, NoParams, Params, Registry

#: Forming strategies (see the module docstring for the contract).
FORMING = Registry("forming strategy")
#: The names (a registry iterates its names); kept for earlier callers.
STRATEGIES = FORMING


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

    name: a name in ``FORMING``; labels: int (D,); num_clients: C;
    dist: the distribution type; params: the strategy's typed parameters (``params.keep``,
    also readable as ``strategy.keep``).
    """
    name: str
    labels: np.ndarray
    num_clients: int
    dist: Distribution
    params: Params = dataclasses.field(default_factory=NoParams)

    def __getattr__(self, name):  # strategy parameters as attributes (``strategy.keep``)
        params = self.__dict__.get("params")
        if params is not None and name in type(params).model_fields:
            return getattr(params, name)
        raise AttributeError(name)

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if self.labels.size else 0

    def init(self, seed: int) -> dict:
        """Round-0 split and fixed per-client profile, drawn from ``seed``."""
        seed = int(seed)
        rng = streams.rng(seed, streams.PARTITION)
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
        rng = as_rng(streams.rng(seed, streams.FORMING, round) if rng is None else rng)
        first = int(state["round"]) < 0
        previous = unpack(state["indices"], state["offsets"])
        entry = FORMING.get(self.name)
        if first and not entry.meta.get("redraw_first", False):
            assignments = previous
        else:
            assignments = entry.obj(self, state, previous, rng, params=self.params)
        new = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
        new["seed"], new["round"] = seed, round
        new["indices"], new["offsets"] = pack(assignments)
        return [a.copy() for a in assignments], new

    # -- redraws (helpers for the registered strategies) -----------------------------
    @property
    def by_counts(self) -> bool:
        """Redraw by each client's per-class counts (label-skewed distributions)."""
        return self.dist.label_skewed

    def fresh(self, state, rng):
        """A fresh disjoint split with the round-0 per-client counts (or sizes)."""
        counts = np.asarray(state["counts"], dtype=np.int64)
        if self.by_counts:
            return deal_counts(class_pools(self.labels, self.num_classes), counts, rng)
        return split_by_sizes(rng.permutation(self.labels.size), np.asarray(state["sizes"]))

    def stochastic(self, state, rng):
        """Each client draws its own set (same counts or size) independently of the others."""
        sizes = np.asarray(state["sizes"], dtype=np.int64)
        if not self.by_counts:
            return [np.sort(rng.choice(self.labels.size, int(s), replace=False)).astype(np.int64)
                    for s in sizes]
        counts = np.asarray(state["counts"], dtype=np.int64)
        pools = class_pools(self.labels, self.num_classes)
        out = []
        for row in counts:
            parts = [rng.choice(pools[k], int(n), replace=False) for k, n in enumerate(row) if n]
            out.append(np.sort(np.concatenate(parts) if parts else np.zeros(0)).astype(np.int64))
        return out


def class_pools_of(labels: np.ndarray, candidates: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """Per-class pools restricted to ``candidates`` (int64 indices)."""
    sub = class_pools(labels[candidates], num_classes)
    return [candidates[p] for p in sub]


# ---------------------------------------------------------------- strategies

@FORMING.register("static")
def static(strategy, state, previous, rng, params):
    """One split at round 0, kept to the end."""
    return previous


@FORMING.register("dynamic")
def dynamic(strategy, state, previous, rng, params):
    """A fresh disjoint split of the whole data set every round."""
    return strategy.fresh(state, rng)


@FORMING.register("stochastic", redraw_first=True)
def stochastic(strategy, state, previous, rng, params):
    """Every client draws its set on its own each round (sets may overlap between clients)."""
    return strategy.stochastic(state, rng)


class HybridParams(Params):
    keep: float = Field(0.5, ge=0.0, le=1.0,
                        description="fraction of its previous local set a client keeps each round")


@FORMING.register("hybrid", HybridParams)
def hybrid(strategy, state, previous, rng, params):
    """Each client keeps a fraction keep of its set and redraws the rest from unkept indices."""
    labels, num_classes, keep = strategy.labels, strategy.num_classes, params.keep
    kept = []
    for a in previous:
        n_keep = int(round(keep * len(a)))
        kept.append(rng.choice(a, n_keep, replace=False) if n_keep else np.zeros(0, np.int64))
    held = np.zeros(labels.size, dtype=bool)
    for k in kept:
        held[k] = True
    free = np.flatnonzero(~held)
    if strategy.by_counts:
        counts = np.asarray(state["counts"], dtype=np.int64)
        need = counts - count_matrix(labels, kept, num_classes)
        new = deal_counts(class_pools_of(labels, free, num_classes), need, rng)
    else:
        sizes = np.asarray(state["sizes"], dtype=np.int64)
        need = sizes - np.array([len(k) for k in kept], dtype=np.int64)
        new = split_by_sizes(rng.permutation(free), need)
    return [np.sort(np.concatenate([k, n])).astype(np.int64) for k, n in zip(kept, new)]


def make_strategy(spec, labels, num_clients: int, dist_spec="iid", *, keep=None, **params
                  ) -> Strategy:
    """Build a forming strategy.

    spec: a name in ``FORMING`` (``'static'``, ``'hybrid'``), the shorthand
    ``'hybrid(0.7)'``, a mapping ``{name: hybrid, keep: 0.7}`` or a Choice.
    keep / params: parameters of the strategy given separately (``keep`` is ignored
    by strategies that have none; values in ``spec`` win). dist_spec:
    :class:`Distribution`, its string form or a mapping. Raises :class:`UserError`
    for bad names or parameters and impossible requests.
    """
    if isinstance(spec, Choice):
        spec = spec.model_dump()
    d = dict(spec) if isinstance(spec, Mapping) else FORMING.validate(str(spec), fill=False)
    fields = FORMING.get(d.get("name")).params.model_fields
    given = dict(params, **({"keep": keep} if keep is not None and "keep" in fields else {}))
    d = FORMING.validate({**given, **d})
    name = d.pop("name")
    dist = parse_distribution(dist_spec)
    labels = check_request(labels, num_clients, dist).copy()
    labels.setflags(write=False)
    return Strategy(name, labels, int(num_clients), dist, FORMING.get(name).params(**d))
