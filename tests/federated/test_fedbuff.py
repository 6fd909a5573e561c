"""FedBuff's pure server: staleness weights, buffer flushes, drops, bitwise replay."""
import numpy as np
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.federated import make_algorithm
from fedjax_grid.federated.fedbuff import Arrival, AsyncFold, replay
from fedjax_grid.federated.staleness import STALENESS, staleness_weight


def _variables(seed=0):
    rng = np.random.default_rng(seed)
    return {"params": {"dense": {"kernel": rng.normal(size=(5, 3)).astype(np.float32),
                                 "bias": rng.normal(size=(3,)).astype(np.float32)}}}


def _delta(seed):
    rng = np.random.default_rng(100 + seed)
    return {"dense": {"kernel": (0.1 * rng.normal(size=(5, 3))).astype(np.float32),
                      "bias": (0.1 * rng.normal(size=(3,))).astype(np.float32)}}


POLICY = {"buffer_size": 3, "staleness": {"name": "polynomial", "a": 0.5}, "max_staleness": 4}


def test_staleness_weights():
    assert staleness_weight({"name": "constant"}, 9) == 1.0
    assert staleness_weight({"name": "polynomial", "a": 0.5}, 3) == pytest.approx(0.5)
    assert staleness_weight({"name": "hinge", "a": 10.0, "b": 4}, 4) == 1.0
    assert staleness_weight({"name": "hinge", "a": 10.0, "b": 4}, 6) == pytest.approx(1 / 21)
    assert set(STALENESS.names()) >= {"constant", "polynomial", "hinge"}
    with pytest.raises(UserError, match="server.staleness.a"):
        STALENESS.validate({"name": "polynomial", "a": -1}, "server.staleness")


def test_fresh_full_buffer_equals_a_synchronous_fedavg_round():
    algo = make_algorithm("mean", "fedavg", bn_mode="aggregate")
    state = algo.init(_variables())
    sync = algo.begin(state)
    for k in range(3):
        sync.add_delta(_delta(k), 10 + k, k)
    want, _ = sync.finish()
    fold = AsyncFold(algo, state, buffer_size=3, staleness={"name": "constant"}, max_staleness=0)
    verdicts = [fold.arrive(Arrival(k, 0, _delta(k), 10 + k)) for k in range(3)]
    assert [v.flushed for v in verdicts] == [False, False, True]
    assert fold.version == 1
    for a, b in zip(np.asarray(want.params["dense"]["kernel"]).ravel(),
                    np.asarray(fold.state.params["dense"]["kernel"]).ravel()):
        assert a == b  # bitwise


def test_stale_deltas_shrink_and_too_stale_ones_are_dropped():
    algo = make_algorithm("mean", "fedavg", bn_mode="aggregate")
    state = algo.init(_variables())
    fold = AsyncFold(algo, state, buffer_size=1, staleness={"name": "polynomial", "a": 1.0},
                     max_staleness=2)
    for k in range(3):  # versions 1, 2, 3: one fresh delta each
        assert fold.arrive(Arrival(k, k, _delta(k), 5)).flushed
    before = fold.state.params["dense"]["bias"].copy()
    v = fold.arrive(Arrival(9, 1, _delta(9), 5))            # staleness 2: weight 1/3
    assert (v.status, v.staleness, v.weight) == ("ok", 2, pytest.approx(1 / 3))
    np.testing.assert_allclose(fold.state.params["dense"]["bias"] - before,
                               _delta(9)["dense"]["bias"] / 3, rtol=1e-5)
    dropped = fold.arrive(Arrival(8, 0, _delta(8), 5))       # staleness 4 > 2
    assert dropped.status == "dropped" and "max_staleness" in dropped.reason
    assert fold.version == 4
    future = fold.arrive(Arrival(7, 99, _delta(7), 5))
    assert future.status == "rejected"
    bad = _delta(6)
    bad["dense"]["bias"][0] = np.nan
    assert fold.arrive(Arrival(6, 4, bad, 5)).status == "rejected"


def test_replaying_the_arrival_log_reproduces_the_state_bitwise():
    algo = make_algorithm("mean", "fedadam", bn_mode="aggregate")
    state0 = algo.init(_variables(1))
    live = AsyncFold(algo, state0, **POLICY)
    log, rng = [], np.random.default_rng(5)
    held = {k: 0 for k in range(6)}  # version each client trains from
    for t in range(40):
        k = int(rng.integers(6))
        a = Arrival(k, held[k], _delta(t), float(rng.integers(5, 50)))
        log.append(a)
        live.arrive(a)
        held[k] = live.version  # it gets the newest model next
    assert live.version >= 8
    again = replay(algo, state0, log, **POLICY)
    assert again.version == live.version
    for x, y in zip(np.asarray(live.state.params["dense"]["kernel"]).ravel(),
                    np.asarray(again.state.params["dense"]["kernel"]).ravel()):
        assert x == y
    shuffled = replay(algo, state0, log[::-1], **POLICY)
    assert not np.array_equal(shuffled.state.params["dense"]["kernel"],
                              live.state.params["dense"]["kernel"])
