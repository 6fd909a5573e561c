"""Property tests of the distribution types (pure numpy, seeded)."""
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from fedjax_grid.errors import UserError
from fedjax_grid.partition.distributions import (Distribution, count_matrix, distribute,
                                                 parse_distribution)

SETTINGS = settings(max_examples=25, deadline=None)


def _labels(num_classes, per_class, seed=0, jitter=0):
    rng = np.random.default_rng(seed)
    sizes = per_class + rng.integers(0, jitter + 1, num_classes)
    return rng.permutation(np.repeat(np.arange(num_classes), sizes))


def _assert_disjoint(assignments):
    flat = np.concatenate(assignments)
    assert len(np.unique(flat)) == len(flat)


def _assert_well_formed(assignments, num_clients, d_total):
    assert len(assignments) == num_clients
    for a in assignments:
        assert a.dtype == np.int64
        assert np.all(np.diff(a) > 0)  # sorted, no duplicates within a client
        assert a.size == 0 or (a.min() >= 0 and a.max() < d_total)


@SETTINGS
@given(k=st.integers(2, 12), per_class=st.integers(5, 40), c=st.integers(1, 30), seed=st.integers(0, 2**31))
def test_iid_sizes_disjoint(k, per_class, c, seed):
    labels = _labels(k, per_class, seed, jitter=3)
    c = min(c, labels.size)
    out = distribute(labels, c, Distribution("iid"), np.random.default_rng(seed))
    _assert_well_formed(out, c, labels.size)
    _assert_disjoint(out)
    assert [len(a) for a in out] == [labels.size // c] * c


@SETTINGS
@given(k=st.integers(2, 10), mult=st.integers(1, 4), beta=st.floats(0, 1), seed=st.integers(0, 2**31),
       clients_div=st.booleans())
def test_balanced_home_fraction_matches_target(k, mult, beta, seed, clients_div):
    """Where every class is home to equally many clients, each client's home
    fraction is beta + (1-beta) m / K (within rounding) and sets are disjoint."""
    labels = _labels(k, 60, seed)
    if clients_div:  # C divides K: m = K / C home classes each, every class home once
        divisors = [c for c in range(1, k + 1) if k % c == 0]
        c = divisors[seed % len(divisors)]
    else:  # C = mult * K: one home class each, every class home to mult clients
        c = mult * k
    out, info = distribute(labels, c, Distribution("balanced", beta=beta), seed, return_info=True)
    _assert_well_formed(out, c, labels.size)
    _assert_disjoint(out)
    d = labels.size // c
    assert [len(a) for a in out] == [d] * c
    home = info["home"]
    m = home.shape[1]
    assert m == max(1, math.ceil(k / c))
    # every class is home to the same number of clients
    assert len(set(np.bincount(home.ravel(), minlength=k))) == 1
    target = beta + (1 - beta) * m / k
    counts = count_matrix(labels, out, k)
    for client in range(c):
        frac = counts[client, home[client]].sum() / d
        # rounding of beta*d, the even split's remainders and pool fallback moves
        assert abs(frac - target) <= (m + 1) / d + info["fallback"] / d, (frac, target)


def test_balanced_extremes():
    labels = _labels(10, 50, 1)
    out, info = distribute(labels, 10, Distribution("balanced", beta=1.0), 0, return_info=True)
    for client, a in enumerate(out):  # pathological: only the home class
        assert set(labels[a]) == {info["home"][client, 0]}
    out = distribute(labels, 5, Distribution("balanced", beta=0.0), 0)
    counts = count_matrix(labels, out, 10)
    assert counts.min() >= 9 and counts.max() <= 11  # 100 per client, ~10 per class


def test_balanced_records_fallback_on_unbalanced_pools():
    labels = np.concatenate([np.zeros(500, int), np.ones(20, int)])
    out, info = distribute(labels, 2, "balanced(1.0)", 0, return_info=True)
    _assert_disjoint(out)
    assert [len(a) for a in out] == [260, 260]
    assert info["fallback"] > 0  # class 1 has only 20 samples for a 260-sample home quota


@SETTINGS
@given(k=st.integers(2, 10), c=st.integers(1, 20), alpha=st.floats(0.05, 100), seed=st.integers(0, 2**31))
def test_dirichlet_covers_disjoint_nonempty(k, c, alpha, seed):
    labels = _labels(k, 20, seed, jitter=5)
    out = distribute(labels, c, Distribution("dirichlet", alpha=alpha), seed)
    _assert_well_formed(out, c, labels.size)
    _assert_disjoint(out)
    assert sum(len(a) for a in out) == labels.size
    assert min(len(a) for a in out) >= 1


def test_dirichlet_alpha_controls_skew():
    labels = _labels(10, 200, 0)
    def skew(alpha):
        counts = count_matrix(labels, distribute(labels, 20, Distribution("dirichlet", alpha=alpha), 0), 10)
        p = counts / counts.sum(1, keepdims=True)
        return float(np.mean(p.max(1)))
    assert skew(0.05) > 0.7 > 0.2 > skew(1000.0)


@SETTINGS
@given(k=st.integers(2, 10), c=st.integers(1, 20), shards=st.integers(1, 4), seed=st.integers(0, 2**31))
def test_shards_sizes_and_label_count(k, c, shards, seed):
    labels = _labels(k, 30, seed)
    assume(c * shards <= labels.size)  # more shards than examples is refused (tested elsewhere)
    out = distribute(labels, c, Distribution("shards", shards_per_client=shards), seed)
    _assert_well_formed(out, c, labels.size)
    _assert_disjoint(out)
    size = labels.size // (c * shards)
    assert all(len(a) == shards * size for a in out)
    # a shard is a run of the label-sorted order: it spans at most 2 classes when shorter than a class
    if size <= 30:
        assert all(len(np.unique(labels[a])) <= 2 * shards for a in out)


@SETTINGS
@given(c=st.integers(1, 40), sigma=st.floats(0, 3), seed=st.integers(0, 2**31))
def test_quantity_sizes(c, sigma, seed):
    labels = _labels(5, 20, seed)
    out = distribute(labels, c, Distribution("quantity", sigma=sigma), seed)
    _assert_well_formed(out, c, labels.size)
    _assert_disjoint(out)
    sizes = [len(a) for a in out]
    assert sum(sizes) == labels.size and min(sizes) >= 1
    if sigma == 0:
        assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("kind", ["iid", "balanced", "dirichlet", "shards", "quantity"])
def test_deterministic_under_seed(kind):
    labels = _labels(7, 30, 3)
    a = distribute(labels, 6, Distribution(kind), np.random.default_rng(11))
    b = distribute(labels, 6, Distribution(kind), 11)
    c = distribute(labels, 6, Distribution(kind), 12)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("make, match", [
    (lambda: Distribution("balanced", beta=1.2), "beta=1.2"),
    (lambda: Distribution("balanced", beta=-0.1), "beta=-0.1"),
    (lambda: Distribution("balanced", beta=float("nan")), "beta"),
    (lambda: Distribution("dirichlet", alpha=0), "alpha=0"),
    (lambda: Distribution("dirichlet", alpha=-1), "alpha=-1"),
    (lambda: Distribution("shards", shards_per_client=0), "shards"),
    (lambda: Distribution("quantity", sigma=-1), "sigma"),
    (lambda: Distribution("zipf"), "'zipf'"),
    (lambda: parse_distribution("balanced(x)"), "'x'"),
    (lambda: distribute(np.arange(5) % 2, 6, "iid", 0), "num_clients=6 exceeds"),
    (lambda: distribute(np.arange(5) % 2, 0, "iid", 0), "num_clients=0"),
    (lambda: distribute(np.arange(10) % 2, 4, "shards(3)", 0), "12 exceeds"),
])
def test_impossible_requests_are_one_line_user_errors(make, match):
    with pytest.raises(UserError, match=match) as err:
        make()
    assert "\n" not in str(err.value)


def test_parse_and_alias():
    assert parse_distribution("balanced(0.9)") == Distribution("balanced", beta=0.9)
    assert parse_distribution("shards(3)").shards_per_client == 3
    assert Distribution("shards", shards=4).shards_per_client == 4
    assert str(parse_distribution(" dirichlet( 0.5 ) ")) == "dirichlet(0.5)"


def test_stratified_share_is_balanced_with_the_complementary_beta():
    labels = _labels(10, 50, 3)
    for share in (0.0, 0.8, 1.0):
        a = distribute(labels, 5, Distribution("stratified", share=share), 7)
        b = distribute(labels, 5, Distribution("balanced", beta=1.0 - share), 7)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    parts, info = distribute(labels, 5, "stratified(0.8)", 7, return_info=True)
    home = info["home"]                       # 2 home classes of 10 per client
    frac = [np.isin(labels[p], home[c]).mean() for c, p in enumerate(parts)]
    assert np.allclose(frac, 0.2 + 0.8 * 2 / 10, atol=0.02)   # (1 - share) + share * m / K
    assert str(Distribution("stratified", share=0.9)) == "stratified(0.9)"
    with pytest.raises(UserError, match="share"):
        Distribution("stratified", share=1.5)


def test_distribution_pickles_and_copies():
    import copy
    import pickle
    spec = Distribution("stratified", share=0.9)
    assert pickle.loads(pickle.dumps(spec)) == spec == copy.deepcopy(spec)
    assert spec.params == {"share": 0.9, "classes_per_client": None} and spec.label_skewed
    with pytest.raises(AttributeError):
        spec.share = 0.5
