"""Property tests of the four forming strategies over rounds."""
import io

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fedjax_grid.errors import UserError
from fedjax_grid.partition.distributions import count_matrix
from fedjax_grid.partition.forming import STRATEGIES, make_strategy

SETTINGS = settings(max_examples=25, deadline=None)
DISTS = ["iid", "balanced(0.8)", "dirichlet(0.5)", "shards(2)", "quantity(1.0)"]


def _labels(seed, k=6, per_class=25):
    rng = np.random.default_rng(seed)
    return rng.permutation(np.repeat(np.arange(k), per_class + rng.integers(0, 4, k)))


def _run(strategy, seed, rounds):
    state = strategy.init(seed)
    out = []
    for r in range(rounds):
        assignments, state = strategy.apply(state, None, r)
        out.append(assignments)
    return out, state


def _snapshot(state):
    return {k: np.array(v, copy=True) for k, v in state.items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _disjoint(assignments):
    flat = np.concatenate(assignments)
    return len(np.unique(flat)) == len(flat)


@SETTINGS
@given(name=st.sampled_from(STRATEGIES), dist=st.sampled_from(DISTS), c=st.integers(1, 12),
       keep=st.floats(0, 1), seed=st.integers(0, 2**31))
def test_sizes_histograms_purity_and_determinism(name, dist, c, keep, seed):
    labels = _labels(seed)
    strategy = make_strategy(name, labels, c, dist, keep=keep)
    state = strategy.init(seed)
    sizes = state["sizes"].copy()
    counts0 = state["counts"].copy()
    k = int(labels.max()) + 1
    previous = None
    for r in range(3):
        before = _snapshot(state)
        assignments, new_state = strategy.apply(state, np.random.default_rng([seed, r]), r)
        assert _same_state(state, before), "apply mutated its input state"
        # determinism: same state and seed -> same sets
        again, again_state = strategy.apply(state, np.random.default_rng([seed, r]), r)
        assert all(np.array_equal(x, y) for x, y in zip(assignments, again))
        assert _same_state(new_state, again_state)
        assert [len(a) for a in assignments] == list(sizes)
        for a in assignments:
            assert a.dtype == np.int64 and np.all(np.diff(a) > 0)  # no repeats within a client
            assert a.size == 0 or (a.min() >= 0 and a.max() < labels.size)
        if name != "stochastic":
            assert _disjoint(assignments)
        if strategy.dist.label_skewed:  # home classes / proportions fixed across rounds
            assert np.array_equal(count_matrix(labels, assignments, k), counts0)
        if name == "static" and previous is not None:
            assert all(np.array_equal(x, y) for x, y in zip(assignments, previous))
        if name == "hybrid" and previous is not None:
            for now, before_set in zip(assignments, previous):
                n_keep = int(round(keep * len(before_set)))
                assert len(np.intersect1d(now, before_set)) >= n_keep
        previous = assignments
        state = new_state
        assert state["round"] == r


def test_dynamic_covers_and_changes():
    labels = _labels(0)
    s = make_strategy("dynamic", labels, 5, "iid")
    rounds, _ = _run(s, 1, 3)
    d = labels.size // 5
    for a in rounds:
        assert _disjoint(a) and len(np.concatenate(a)) == 5 * d
    assert not np.array_equal(rounds[0][0], rounds[1][0])


def test_stochastic_overlaps_between_clients():
    labels = _labels(0, k=2, per_class=20)
    s = make_strategy("stochastic", labels, 4, "iid")
    rounds, _ = _run(s, 0, 5)
    # 4 clients x 10 from 40+ indices drawn independently: overlap is (almost surely) seen
    assert any(not _disjoint(a) for a in rounds)


def test_hybrid_keep_exact_when_pool_has_spare():
    """With spare indices (D > C*d) the kept part is exact and the rest is new to all."""
    labels = np.arange(1000) % 10
    s = make_strategy("hybrid", labels, 4, "iid", keep=0.75)
    state = s.init(0)
    a0, state = s.apply(state, None, 0)
    a1, state = s.apply(state, None, 1)
    for x, y in zip(a0, a1):
        assert len(x) == 250
        assert 187 <= len(np.intersect1d(x, y)) <= 250
    assert _disjoint(a1)
    s0 = make_strategy("hybrid(0)", labels, 4, "iid")
    s1 = make_strategy("hybrid(1)", labels, 4, "iid")
    r1, _ = _run(s1, 0, 3)
    assert all(np.array_equal(x, y) for x, y in zip(r1[0], r1[2]))
    r0, _ = _run(s0, 0, 3)
    assert not np.array_equal(r0[0][0], r0[1][0])


def test_state_round_trips_through_npz():
    labels = _labels(2)
    s = make_strategy("hybrid", labels, 4, "balanced(0.9)", keep=0.5)
    state = s.init(5)
    a, state = s.apply(state, None, 0)
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    loaded = dict(np.load(buf))
    assert set(loaded) == set(state) and "home" in loaded
    x, _ = s.apply(state, None, 1)
    y, _ = s.apply(loaded, None, 1)
    assert all(np.array_equal(p, q) for p, q in zip(x, y))


def test_coverage_over_rounds_dynamic_vs_static():
    labels = np.arange(200) % 4
    static, _ = _run(make_strategy("static", labels, 10, "iid"), 0, 4)
    dynamic, _ = _run(make_strategy("dynamic", labels, 10, "iid"), 0, 4)
    client0_static = np.unique(np.concatenate([r[0] for r in static]))
    client0_dynamic = np.unique(np.concatenate([r[0] for r in dynamic]))
    assert len(client0_static) == 20 and len(client0_dynamic) > 40


@pytest.mark.parametrize("call, match", [
    (lambda: make_strategy("random", np.arange(10) % 2, 2, "iid"), "'random'"),
    (lambda: make_strategy("hybrid", np.arange(10) % 2, 2, "iid", keep=1.5), "keep=1.5"),
    (lambda: make_strategy("static(3)", np.arange(10) % 2, 2, "iid"), "no parameter"),
    (lambda: make_strategy("static", np.arange(10) % 2, 11, "iid"), "exceeds"),
    (lambda: make_strategy("dynamic", np.arange(10) % 2, 2, "balanced(2)"), "beta=2"),
])
def test_bad_requests(call, match):
    with pytest.raises(UserError, match=match):
        call()
