"""Broadcast direction: full model in bf16 or a delta from the copy a desktop holds."""
import pickle

import numpy as np
import pytest

from fedjax_grid.compression import (apply_broadcast, apply_delta, broadcast_payload, decode,
                                     delta_tree, encode, payload_nbytes, tree_nbytes_float32)
from fedjax_grid.compression.base import flatten


def model(seed=0):
    rng = np.random.default_rng(seed)
    return {"params": {"kernel": rng.standard_normal((64, 300)).astype(np.float32),
                       "bias": rng.standard_normal(32).astype(np.float32)},
            "batch_stats": {"mean": rng.standard_normal(256).astype(np.float32)},
            "count": np.int64(seed)}


def step(tree, rng, size=1e-2):
    """The next global model: a small random step (the counter replaced)."""
    out = {"params": {k: (v + size * rng.standard_normal(v.shape)).astype(np.float32)
                      for k, v in tree["params"].items()},
           "batch_stats": {"mean": (tree["batch_stats"]["mean"]
                                    + size * rng.standard_normal(256)).astype(np.float32)},
           "count": np.int64(tree["count"] + 1)}
    return out


def bitwise_equal(a, b):
    la, lb = flatten(a)[1], flatten(b)[1]
    return len(la) == len(lb) and all(x.dtype == y.dtype and x.tobytes() == y.tobytes()
                                      for x, y in zip(la, lb))


def dist(a, b):
    return float(np.sqrt(sum(np.sum((x.astype(np.float64) - y) ** 2)
                             for x, y in zip(flatten(a)[1], flatten(b)[1]) if x.dtype.kind == "f")))


def test_full_model_in_bf16_when_the_desktop_holds_nothing():
    g = model()
    payload, holds = broadcast_payload(g, None, "topk(0.01)", np.random.default_rng(0), version=3)
    assert payload["broadcast"] == "full" and payload["body"]["codec"] == "bf16"
    assert payload["version"] == 3 and payload["base_version"] is None
    got = apply_broadcast(payload, None)
    assert bitwise_equal(got, holds)
    assert got["count"] == 0 and got["count"].dtype == np.int64
    assert dist(got, g) <= 2.0**-8 * dist(g, {"params": {k: 0 * v for k, v in g["params"].items()},
                                             "batch_stats": {"mean": 0 * g["batch_stats"]["mean"]},
                                             "count": g["count"]})
    ratio = tree_nbytes_float32(g) / payload_nbytes(payload)
    assert 1.9 < ratio <= 2.0


@pytest.mark.parametrize("codec", ["none", "bf16", "int8", "topk(0.05)"])
def test_worker_gets_bit_for_bit_what_the_coordinator_records(codec):
    rng = np.random.default_rng(1)
    g = model()
    payload, holds = broadcast_payload(g, None, codec, np.random.default_rng(0), version=0)
    held = apply_broadcast(payload, None)
    for v in range(1, 4):
        g = step(g, rng)
        payload, holds = broadcast_payload(g, holds, codec, np.random.default_rng([9, v]),
                                           version=v, base_version=v - 1)
        assert payload["broadcast"] == "delta"
        held = apply_broadcast(pickle.loads(pickle.dumps(payload)), held, held_version=v - 1)
        assert bitwise_equal(held, holds)
        assert held["count"] == v                       # non-floating leaves are replaced
    if codec == "none":      # float32 deltas: exact up to the rounding of (g - held) + held
        assert dist(held, g) <= 1e-6


@pytest.mark.parametrize("codec", ["int8", "topk(0.05)"])
def test_closed_loop_error_does_not_accumulate(codec):
    """Deltas from the desktop's own copy keep it within one codec error of the global
    model; deltas between exact global versions (open loop) let the errors add up."""
    rng = np.random.default_rng(2)
    g = model()
    _, closed = broadcast_payload(g, None, codec, None)
    open_ = closed
    errors = []
    for v in range(1, 31):
        g_new = step(g, rng)
        _, closed = broadcast_payload(g_new, closed, codec, np.random.default_rng([5, v]))
        # Open loop: the exact difference g_new - g, compressed and added to the copy.
        sent, _ = encode(codec, delta_tree(g_new, g), np.random.default_rng([5, v]))
        open_ = apply_delta(open_, decode(sent))
        g = g_new
        errors.append((dist(closed, g), dist(open_, g)))
    closed_err = [c for c, _ in errors]
    assert max(closed_err[-10:]) <= 1.5 * max(closed_err[5:15])       # bounded, not growing
    assert errors[-1][0] < 0.5 * errors[-1][1]                       # open loop drifts


def test_delta_bytes_and_determinism():
    rng = np.random.default_rng(3)
    g0 = model()
    _, holds = broadcast_payload(g0, None, "topk(0.01)", None)
    g1 = step(g0, rng)
    a, _ = broadcast_payload(g1, holds, "int8", np.random.default_rng(7))
    b, _ = broadcast_payload(g1, holds, "int8", np.random.default_rng(7))
    assert pickle.dumps(a) == pickle.dumps(b)
    full = tree_nbytes_float32(g1)
    sparse, _ = broadcast_payload(g1, holds, "topk(0.01)", None)
    assert full / payload_nbytes(sparse) > 25        # 19 200-value kernel at 1 %, the rest raw


def test_worker_refuses_a_delta_it_cannot_apply():
    g = model()
    _, holds = broadcast_payload(g, None, "none", None)
    payload, _ = broadcast_payload(step(g, np.random.default_rng(0)), holds, "bf16", None,
                                   version=5, base_version=4)
    with pytest.raises(ValueError, match="holds none"):
        apply_broadcast(payload, None)
    with pytest.raises(ValueError, match="from version 4 cannot apply to version 3"):
        apply_broadcast(payload, holds, held_version=3)
    with pytest.raises(ValueError, match="not a broadcast payload"):
        apply_broadcast(payload["body"], holds)
