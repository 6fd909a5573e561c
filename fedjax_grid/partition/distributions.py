"""How a data set of D labelled examples is cut into C local sets (one per client).

All functions are pure numpy: they take the labels (int array, shape (D,), classes
``0..K-1``), the number of clients C, a :class:`Distribution` and an explicit
``np.random.Generator`` (or an int seed) and return a list of C sorted int64 index
arrays into the data set. Nothing is global; the same seed gives the same split.

Distribution kinds
------------------
``iid``
    Disjoint local sets of ``d = floor(D / C)`` random indices each (the study's
    "independent" type). ``D - C*d`` indices are left unused.

``balanced(beta)``
    The study's second type, whose exact definition is not published; accuracy
    drops under it, so it skews labels. Our reading:

    * every client gets a fixed *home set* of ``m`` classes, ``m =
      classes_per_client`` or, by default, ``max(1, ceil(K / C))``. Home sets are
      dealt round-robin over a random permutation of the classes, so every class
      is the home of either ``floor(C*m/K)`` or ``ceil(C*m/K)`` clients (all
      classes covered, as equally as possible);
    * each client gets ``d = floor(D / C)`` samples: ``round(beta * d)`` from its
      home classes (split evenly over them, remainder to random home classes) and
      the rest spread evenly over all K classes (remainder to random classes);
    * samples are drawn without replacement from per-class pools, so local sets are
      disjoint. If the requested count of a class exceeds its pool (unbalanced
      labels, many clients sharing a home class) the surplus is moved, per client,
      first off the "uniform" part and then off the home part, onto classes that
      still have samples left. The number of moved samples is reported as
      ``info['fallback']`` by ``distribute(..., return_info=True)``.

    So ``beta = 0`` is IID (stratified), ``beta = 1`` is pathological (each client
    sees only its home classes), and the expected fraction of home-class samples
    of a client is ``beta + (1 - beta) * m / K``. The study's values are 0.8-0.9.

``stratified(share)``
    The same construction as ``balanced``, parametrised by the share that is
    *balanced*: a fraction ``share`` of each local set is drawn class-stratified
    (evenly over all K classes) and the rest ``1 - share`` from the client's home
    classes; ``stratified(s)`` is ``balanced(1 - s)``. This reading of the study's
    "balanced, parameter 0.8-0.9" (80-90 % of each local set balanced) is the one
    whose accuracy ratio to independent data matches the study's (VGG-16, CIFAR-10:
    85.18 / 86.21 = 0.988); the home-class reading ``balanced(0.8)`` is far harsher
    (see ``benchmarks/balanced_calibration.py`` and docs/RESULTS.md). The presets
    ``paper-*-balanced`` use it.

``dirichlet(alpha)``
    The usual label skew (Hsu et al. 2019): for every class the pool is split over
    the clients by proportions drawn from ``Dir(alpha * 1_C)``. Local sets are
    disjoint, cover the whole data set and have their *natural* (unequal) sizes;
    a client left empty takes one random sample from the largest client so that
    every client has at least one example.

``shards(k)``
    McMahan et al. 2017: sort by label, cut into ``C*k`` shards of
    ``floor(D / (C*k))`` consecutive examples, give every client ``k`` random
    shards. The ``D mod (C*k)`` last examples are unused.

``quantity(sigma)``
    Quantity skew: client sizes ``~ lognormal(0, sigma)``, normalised to add up to
    D (each at least 1); labels IID (a random permutation cut by those sizes).
    ``sigma`` defaults to 0.5 (the config's default, which every run through the
    config used; ``Distribution('quantity')`` used 1.0 before the registry).

Every kind is registered in ``DISTRIBUTIONS`` with its typed parameters (bounds,
defaults, descriptions: ``DISTRIBUTIONS.schema(name)``); further kinds are one
file each in this package (e.g. ``pathological.py``), imported by
``fedjax_grid.partition`` so that they register themselves.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Optional, Sequence

import numpy as np
from pydantic import Field

from fedjax_grid.errors import UserError
from fedjax_grid.registry import Choice, Params, Registry

#: Distribution kinds: ``DISTRIBUTIONS.register(name, Params, label_skewed=...)`` on a
#: function ``fn(labels, num_clients, rng, info, params) -> list of C index arrays``
#: (labels int64 (D,), rng a Generator, info a dict it may fill, params its typed Params).
#: Meta: ``label_skewed`` (clients' label histograms differ by design: forming
#: strategies then redraw by per-class counts), ``check(labels, num_clients, params)``
#: (refuses an impossible request before anything is drawn).
DISTRIBUTIONS = Registry("distribution")


class Distribution:
    """A distribution kind and its parameters, checked against ``DISTRIBUTIONS``.

    ``Distribution('balanced', beta=0.8)``; parameters read as attributes
    (``spec.beta``) and as ``spec.params``; unknown or out-of-range parameters raise a
    one-line UserError. ``shards=`` is an alias of ``shards_per_client=``.
    """
    __slots__ = ("kind", "params")

    def __init__(self, kind: str = "iid", **params):
        if "shards" in params:
            alias = params.pop("shards")
            if alias is not None:
                params.setdefault("shards_per_client", alias)
        d = DISTRIBUTIONS.validate({"name": kind, **params})
        object.__setattr__(self, "kind", d.pop("name"))
        object.__setattr__(self, "params", d)

    def __getattr__(self, name):
        params = object.__getattribute__(self, "params")
        if name in params:
            return params[name]
        if name == "shards" and "shards_per_client" in params:
            return params["shards_per_client"]
        raise AttributeError(f"distribution {self.kind!r} has no parameter {name!r}")

    def __setattr__(self, name, value):
        raise AttributeError("Distribution is immutable")

    def __reduce__(self):  # pickle / deepcopy by its constructor
        return (_distribution, (self.kind, self.params))

    @property
    def label_skewed(self) -> bool:
        """True when clients' label histograms differ by design."""
        return bool(DISTRIBUTIONS.meta(self.kind, "label_skewed", False))

    def choice(self) -> Choice:
        return Choice(name=self.kind, **self.params)

    def __eq__(self, other):
        return isinstance(other, Distribution) and (self.kind, self.params) == (other.kind, other.params)

    def __hash__(self):
        return hash((self.kind, tuple(sorted(self.params.items()))))

    def __str__(self) -> str:
        return str(self.choice())

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"Distribution({self.kind!r}{args})"


def _distribution(kind: str, params: dict) -> Distribution:
    return Distribution(kind, **params)


def parse_distribution(text) -> Distribution:
    """``'iid'``, ``'balanced(0.8)'``, ``'stratified(0.8)'``, ``'dirichlet(0.5)'``, ``'shards(2)'``,
    ``'quantity(0.5)'``, ``'dirichlet(alpha=0.3)'``, a mapping ``{name: ..., ...}`` or a
    :class:`~fedjax_grid.registry.Choice` -> :class:`Distribution` (one passes through)."""
    if isinstance(text, Distribution):
        return text
    d = DISTRIBUTIONS.validate(text if isinstance(text, (Mapping, Choice)) else str(text))
    return Distribution(d.pop("name"), **d)


# ---------------------------------------------------------------- helpers

def as_rng(rng) -> np.random.Generator:
    """A Generator from a Generator, an int seed or a seed sequence."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def check_request(labels: np.ndarray, num_clients: int, spec: Distribution) -> np.ndarray:
    """Validated int64 labels; UserError for impossible requests."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise UserError(f"labels must be a 1-D array, got shape {labels.shape}")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0):
        raise UserError("labels must be non-negative integers (class ids 0..K-1)")
    if isinstance(num_clients, bool) or int(num_clients) != num_clients:
        raise UserError(f"num_clients={num_clients!r} must be an integer")
    d_total = labels.size
    if num_clients < 1:
        raise UserError(f"num_clients={num_clients} must be >= 1")
    if num_clients > d_total:
        raise UserError(f"num_clients={num_clients} exceeds the data set size D={d_total}")
    check = DISTRIBUTIONS.meta(spec.kind, "check")
    if check is not None:
        check(labels, int(num_clients), DISTRIBUTIONS.get(spec.kind).params(**spec.params))
    return labels.astype(np.int64, copy=False)


def class_pools(labels: np.ndarray, num_classes: int | None = None) -> list[np.ndarray]:
    """Indices of every class, ``pools[k]`` int64 sorted ascending."""
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if labels.size else 0
    k = max(k, num_classes or 0)
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=k))])
    return [order[bounds[i]:bounds[i + 1]].astype(np.int64) for i in range(k)]


def split_by_sizes(indices: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """Consecutive pieces of ``indices`` of the given sizes, each sorted."""
    cuts = np.cumsum(sizes)[:-1]
    return [np.sort(p).astype(np.int64) for p in np.split(np.asarray(indices)[:int(np.sum(sizes))], cuts)]


def deal_counts(pools: Sequence[np.ndarray], counts: np.ndarray, rng: np.random.Generator
                ) -> list[np.ndarray]:
    """Disjoint local sets with ``counts[c, k]`` samples of class k for client c.

    pools: per-class candidate indices (disjoint); counts: int (C, K) with column
    sums <= pool sizes. Every pool is shuffled once and dealt out in client order.
    """
    counts = np.asarray(counts, dtype=np.int64)
    num_clients = counts.shape[0]
    idx_parts, owner_parts = [], []
    for k, pool in enumerate(pools):
        need = int(counts[:, k].sum())
        if need == 0:
            continue
        if need > len(pool):
            raise AssertionError(f"class {k}: {need} requested from a pool of {len(pool)}")
        idx_parts.append(rng.permutation(pool)[:need])
        owner_parts.append(np.repeat(np.arange(num_clients), counts[:, k]))
    if not idx_parts:
        return [np.zeros(0, np.int64) for _ in range(num_clients)]
    idx = np.concatenate(idx_parts)
    owner = np.concatenate(owner_parts)
    order = np.argsort(owner, kind="stable")
    return split_by_sizes(idx[order], counts.sum(axis=1))


def count_matrix(labels: np.ndarray, assignments: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """int64 (C, K): how many samples of class k client c holds."""
    labels = np.asarray(labels, dtype=np.int64)
    return np.stack([np.bincount(labels[a], minlength=num_classes) for a in assignments]).astype(np.int64)


def _even_split(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """``total`` split into ``parts`` near-equal ints, remainder to random parts."""
    out = np.full(parts, total // parts, dtype=np.int64)
    out[rng.choice(parts, total % parts, replace=False)] += 1
    return out


# ---------------------------------------------------------------- kinds

@DISTRIBUTIONS.register("iid")
def iid(labels, num_clients, rng, info, params):
    """Disjoint random local sets of floor(D / C) examples each (the study's "independent")."""
    d = labels.size // num_clients
    perm = rng.permutation(labels.size)
    return split_by_sizes(perm, [d] * num_clients)


def home_classes(num_classes: int, num_clients: int, classes_per_client: int | None,
                 rng: np.random.Generator) -> np.ndarray:
    """int64 (C, m): home classes of each client, dealt round-robin over a random
    class permutation, so each class is home to floor/ceil(C*m/K) clients."""
    m = classes_per_client or max(1, math.ceil(num_classes / num_clients))
    if m > num_classes:
        raise UserError(f"classes_per_client={m} exceeds the number of classes K={num_classes}")
    perm = rng.permutation(num_classes)
    slots = (np.arange(num_clients)[:, None] * m + np.arange(m)[None, :]) % num_classes
    return perm[slots].astype(np.int64)


_HOME_SET = Field(None, ge=1, description="home classes per client (null: max(1, ceil(K / C)))")


class BalancedParams(Params):
    beta: float = Field(0.8, ge=0.0, le=1.0,
                        description="fraction of a client's examples drawn from its home classes")
    classes_per_client: Optional[int] = _HOME_SET


class StratifiedParams(Params):
    share: float = Field(0.8, ge=0.0, le=1.0,
                         description="fraction of a client's examples drawn class-stratified")
    classes_per_client: Optional[int] = _HOME_SET


@DISTRIBUTIONS.register("balanced", BalancedParams, label_skewed=True)
def balanced(labels, num_clients, rng, info, params):
    """A share beta of each local set from the client's home classes, the rest stratified."""
    pools = class_pools(labels)
    k_classes = len(pools)
    supply = np.array([len(p) for p in pools], dtype=np.int64)
    home = home_classes(k_classes, num_clients, params.classes_per_client, rng)
    m = home.shape[1]
    d = labels.size // num_clients
    n_home = int(round(params.beta * d))
    h = np.zeros((num_clients, k_classes), np.int64)
    r = np.zeros((num_clients, k_classes), np.int64)
    for c in range(num_clients):
        h[c, home[c]] = _even_split(n_home, m, rng)
        r[c] = _even_split(d - n_home, k_classes, rng)
    counts, moved = fit_supply(h, r, supply, rng)
    info["home"] = home
    info["fallback"] = moved
    return deal_counts(pools, counts, rng)


@DISTRIBUTIONS.register("stratified", StratifiedParams, label_skewed=True)
def stratified(labels, num_clients, rng, info, params):
    """A share of each local set class-stratified, the rest from home classes (= balanced(1 - share))."""
    as_balanced = BalancedParams.model_construct(beta=1.0 - params.share,
                                                 classes_per_client=params.classes_per_client)
    return balanced(labels, num_clients, rng, info, as_balanced)


def fit_supply(home_part: np.ndarray, rest_part: np.ndarray, supply: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Make per-class demand fit the pools; returns (counts (C, K), samples moved).

    Surplus demand of a class is removed at random, first from the clients'
    uniform parts, then from their home parts, and each client's loss is refilled
    from classes that still have samples. Requires total demand <= total supply.
    """
    h, r = home_part.copy(), rest_part.copy()
    over = (h + r).sum(axis=0) - supply
    deficit = np.zeros(h.shape[0], np.int64)
    for k in np.flatnonzero(over > 0):
        excess = int(over[k])
        for part in (r, h):
            take = min(excess, int(part[:, k].sum()))
            if take:
                removed = rng.multivariate_hypergeometric(part[:, k], take)
                part[:, k] -= removed
                deficit += removed
                excess -= take
    slack = supply - (h + r).sum(axis=0)
    for c in rng.permutation(h.shape[0]):
        if deficit[c]:
            add = rng.multivariate_hypergeometric(slack, int(deficit[c]))
            r[c] += add
            slack -= add
    return h + r, int(deficit.sum())


class DirichletParams(Params):
    alpha: float = Field(0.5, gt=0.0, description="concentration of the per-class Dir(alpha) proportions")


@DISTRIBUTIONS.register("dirichlet", DirichletParams, label_skewed=True)
def dirichlet(labels, num_clients, rng, info, params):
    """Each class split over the clients by Dir(alpha) proportions (Hsu et al. 2019)."""
    pools = class_pools(labels)
    owners = [[] for _ in range(num_clients)]
    for pool in pools:
        if len(pool) == 0:
            continue
        p = rng.dirichlet(np.full(num_clients, params.alpha))
        pool = rng.permutation(pool)
        cuts = (np.cumsum(p)[:-1] * len(pool)).astype(np.int64)
        for c, piece in enumerate(np.split(pool, cuts)):
            owners[c].append(piece)
    sets = [np.concatenate(o) if o else np.zeros(0, np.int64) for o in owners]
    for c in range(num_clients):
        if len(sets[c]) == 0:
            donor = int(np.argmax([len(s) for s in sets]))
            j = rng.integers(len(sets[donor]))
            sets[c] = sets[donor][j:j + 1]
            sets[donor] = np.delete(sets[donor], j)
    return [np.sort(s).astype(np.int64) for s in sets]


class ShardsParams(Params):
    shards_per_client: int = Field(2, ge=1, le=100_000, description="label-sorted shards per client")


def _check_shards(labels, num_clients, params):
    shards_per_client = params.shards_per_client
    if shards_per_client * num_clients > labels.size:
        raise UserError(f"shards: {shards_per_client} shards x {num_clients} clients = "
                        f"{shards_per_client * num_clients} exceeds the data set size D={labels.size}")


@DISTRIBUTIONS.register("shards", ShardsParams, label_skewed=True, check=_check_shards)
def shards(labels, num_clients, rng, info, params):
    """Label-sorted shards, shards_per_client random ones per client (McMahan et al. 2017)."""
    k = params.shards_per_client
    n_shards = num_clients * k
    size = labels.size // n_shards
    perm = rng.permutation(labels.size)
    order = perm[np.argsort(labels[perm], kind="stable")]
    pieces = order[:n_shards * size].reshape(n_shards, size)
    pick = rng.permutation(n_shards).reshape(num_clients, k)
    return [np.sort(pieces[row].ravel()).astype(np.int64) for row in pick]


def quantity_sizes(total: int, num_clients: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """int64 (C,): log-normal client sizes, each >= 1, adding up to ``total``."""
    w = rng.lognormal(0.0, sigma, num_clients)
    share = w / w.sum() * (total - num_clients)
    sizes = np.floor(share).astype(np.int64)
    rem = (total - num_clients) - int(sizes.sum())
    sizes[np.argsort(-(share - sizes), kind="stable")[:rem]] += 1
    return sizes + 1


class QuantityParams(Params):
    sigma: float = Field(0.5, ge=0.0, le=10.0, description="log-normal spread of the client sizes")


@DISTRIBUTIONS.register("quantity", QuantityParams)
def quantity(labels, num_clients, rng, info, params):
    """Quantity skew: log-normal(0, sigma) client sizes, labels IID."""
    sizes = quantity_sizes(labels.size, num_clients, params.sigma, rng)
    return split_by_sizes(rng.permutation(labels.size), sizes)


def distribute(labels, num_clients: int, spec="iid", rng=None, *, return_info: bool = False):
    """Cut a labelled data set into ``num_clients`` local sets.

    labels: int (D,) class ids. spec: a :class:`Distribution`, its string form
    (``'balanced(0.8)'``) or a mapping ``{name: ..., ...}``. rng: ``np.random.Generator``
    or int seed. Returns a list of C sorted int64 index arrays; with
    ``return_info=True`` a pair ``(assignments, info)`` where info may hold
    ``'home'`` (int64 (C, m), balanced/stratified) and ``'fallback'`` (samples moved
    off exhausted class pools). Raises :class:`UserError` for impossible requests
    (C < 1, C > D, shards*C > D).
    """
    spec = parse_distribution(spec)
    labels = check_request(labels, num_clients, spec)
    info: dict = {}
    out = DISTRIBUTIONS.build({"name": spec.kind, **spec.params}, labels, int(num_clients),
                              as_rng(rng), info)
    return (out, info) if return_info else out
