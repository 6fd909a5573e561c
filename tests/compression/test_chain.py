"""The broadcast as a chain of encoded deltas (server.broadcast='delta'): closed loop,
bit-exact reconstruction on the desktop, bytes per holder, pruning, stale copies, resume."""
import numpy as np
import pytest

from fedjax_grid.compression.base import flatten
from fedjax_grid.compression.chain import BroadcastChain, StaleCopy, apply_chain


def model(seed=0, n=20_000):
    rng = np.random.default_rng(seed)
    return {"params": {"w": rng.standard_normal(n).astype(np.float32),
                       "b": rng.standard_normal(16).astype(np.float32)},
            "batch_stats": {"count": np.int32(0)}}


def trajectory(steps, seed=1, lr=0.01):
    """Global models W_0..W_steps: each a small random step from the last."""
    rng = np.random.default_rng(seed)
    w = model()
    out = [w]
    for _ in range(steps):
        p = w["params"]
        w = {"params": {"w": p["w"] + lr * rng.standard_normal(p["w"].size).astype(np.float32),
                        "b": p["b"] + lr},
             "batch_stats": {"count": w["batch_stats"]["count"] + 1}}
        out.append(w)
    return out


def same(a, b):
    la, lb = flatten(a)[1], flatten(b)[1]
    return len(la) == len(lb) and all(np.array_equal(x, y) and x.dtype == y.dtype
                                      for x, y in zip(la, lb))


def rng_for(v):
    return np.random.default_rng([0, 29, v])


def test_desktop_copy_equals_the_reference_bit_for_bit_and_error_does_not_accumulate():
    chain = BroadcastChain("quant(3)")
    held, errors = {}, []
    for v, w in enumerate(trajectory(20)):
        chain.advance(w, v, rng_for(v))
        payload = chain.payload([max(held) if held else None])
        assert (payload["full"] is None) == bool(held)
        version, copy = apply_chain(payload, held)
        held = {version: copy}
        assert version == v and same(copy, chain.reference)
        assert copy["batch_stats"]["count"] == v          # integer leaves: the new value
        errors.append(np.abs(copy["params"]["w"] - w["params"]["w"]).max())
    assert errors[0] == 0.0                               # version 0: the full model, exact
    # closed loop: the error stays within one step's coding error (steps are ~0.01 x 4 sd)
    assert max(errors[1:]) < 0.05 and errors[-1] < 2 * max(errors[1:4])


def test_download_bytes_per_holder_and_pruning():
    chain = BroadcastChain("quant(3)")
    for v, w in enumerate(trajectory(30)):
        chain.advance(w, v, rng_for(v))
        assert chain.download_nbytes(v) == 0
    full = chain.full_nbytes
    step = chain.step_nbytes[30]
    n = 20_000 + 16
    assert 4 * n <= full <= 4 * n + 500                    # float32, plus names and shapes
    assert 8 < full / step < 12                            # ~10x: 3 bits + scales, 32 bits
    assert chain.download_nbytes(None) == full
    assert chain.download_nbytes(29) == step
    assert chain.download_nbytes(27) == sum(chain.step_nbytes[v] for v in (28, 29, 30))
    # old steps are kept only while they add up to less than the full model
    assert sum(chain.step_nbytes.values()) <= full
    oldest = chain.versions[0]
    assert oldest > 0 and chain.download_nbytes(oldest - 1) == full
    assert chain.download_nbytes(oldest) < full


def test_payload_starts_at_the_oldest_known_holder_and_older_copies_catch_up():
    chain = BroadcastChain("quant(4)")
    copies = {}
    for v, w in enumerate(trajectory(5)):
        chain.advance(w, v, rng_for(v))
        copies[v] = chain.reference
    payload = chain.payload([2, 4])
    assert payload["base"] == 2 and [u for u, _ in payload["steps"]] == [3, 4, 5]
    assert payload["full"] is None
    for held in (2, 4):
        version, copy = apply_chain(payload, {held: copies[held]})
        assert version == 5 and same(copy, chain.reference)
    # the newest usable copy is used when several are held
    version, copy = apply_chain(payload, {2: copies[2], 4: copies[4]})
    assert same(copy, chain.reference)
    # a holder of a version the payload does not start from, and no full model: refused
    with pytest.raises(StaleCopy, match=r"holds versions \[1\]; .* steps from version 2"):
        apply_chain(payload, {1: copies[1]})
    with pytest.raises(StaleCopy):
        apply_chain(payload, None)
    # one unknown worker: the full reference rides along
    payload = chain.payload([4, None])
    assert payload["full"] is not None and same(apply_chain(payload, None)[1], chain.reference)


def test_same_seed_same_bytes_and_advance_is_idempotent():
    a, b = BroadcastChain("quant(3)"), BroadcastChain("quant(3)")
    for v, w in enumerate(trajectory(3)):
        a.advance(w, v, rng_for(v))
        b.advance(w, v, rng_for(v))
        b.advance(w, v, rng_for(99))       # the same version again: nothing changes
    assert same(a.reference, b.reference)
    assert a.step_nbytes == b.step_nbytes and a.versions == b.versions == [0, 1, 2, 3]


def test_restored_chain_continues_bitwise():
    traj = trajectory(6)
    whole = BroadcastChain("quant(3)")
    for v, w in enumerate(traj):
        whole.advance(w, v, rng_for(v))
    part = BroadcastChain("quant(3)")
    for v, w in enumerate(traj[:4]):
        part.advance(w, v, rng_for(v))
    resumed = BroadcastChain("quant(3)")
    resumed.restore(part.state())
    assert resumed.download_nbytes(3) == 0 and resumed.download_nbytes(2) == resumed.full_nbytes
    for v, w in enumerate(traj[4:], start=4):
        resumed.advance(w, v, rng_for(v))
    assert same(resumed.reference, whole.reference)
