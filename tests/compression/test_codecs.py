"""Codecs: round trips, unbiasedness, error feedback, determinism, byte counts, bad parameters."""
import math
import pickle

import ml_dtypes
import numpy as np
import pytest

from fedjax_grid.compression import (CODECS, decode, encode, init_state, make_codec, payload_nbytes,
                                     tree_nbytes_float32)
from fedjax_grid.compression.base import flatten
from fedjax_grid.errors import UserError

SPECS = ["none", "bf16", "int8", "int8(block=0)", "quant(3)", "quant(bits=2, block=0)",
         "topk(0.05)", "topk(0.05, values=bf16)"]


def small_tree(seed=0):
    rng = np.random.default_rng(seed)
    return {"params": {"conv": {"kernel": rng.standard_normal((3, 3, 4, 8)).astype(np.float32),
                                "bias": rng.standard_normal(8).astype(np.float32)},
                       "dense": [rng.standard_normal((50, 10)).astype(np.float32) * 1e-3,
                                 np.zeros(10, np.float32)]},
            "batch_stats": (rng.random(300).astype(np.float32), None),
            "step": np.int32(7)}


def million_tree(seed=0):
    """~1 M parameters in VGG-like leaves (one kernel, one dense, small vectors)."""
    rng = np.random.default_rng(seed)
    shapes = {"conv": (3, 3, 64, 128), "dense": (930, 1000), "conv_bias": (128,),
              "bn_scale": (48,), "head": (1000, 10)}
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def assert_same_structure(a, b):
    sa, la = flatten(a)
    sb, lb = flatten(b)
    assert sa == sb
    for x, y in zip(la, lb):
        assert x.shape == y.shape and x.dtype == y.dtype


def test_registry_names():
    assert set(CODECS.names()) >= {"none", "bf16", "int8", "quant", "topk"}


@pytest.mark.parametrize("spec", SPECS)
def test_round_trip_keeps_structure_dtypes_and_raw_leaves(spec):
    tree = small_tree()
    codec = make_codec(spec)
    payload, _ = codec.encode(tree, np.random.default_rng(0), codec.init_state(tree))
    out = decode(payload)
    assert_same_structure(tree, out)
    assert out["batch_stats"][1] is None
    assert isinstance(out["params"]["dense"], list) and isinstance(out["batch_stats"], tuple)
    # Integer counters and leaves under raw_below (64) elements go raw: exact.
    assert out["step"] == 7 and out["step"].dtype == np.int32
    np.testing.assert_array_equal(out["params"]["conv"]["bias"], tree["params"]["conv"]["bias"])
    np.testing.assert_array_equal(out["params"]["dense"][1], tree["params"]["dense"][1])
    # Decoding gives fresh arrays: changing them leaves the input alone.
    out["params"]["conv"]["bias"][:] = 99
    assert tree["params"]["conv"]["bias"].max() < 99


def test_none_is_exact():
    tree = small_tree()
    out = decode(encode("none", tree)[0])
    for x, y in zip(flatten(tree)[1], flatten(out)[1]):
        np.testing.assert_array_equal(x, y)


def test_bf16_exact_for_representable_values_and_rounds_to_nearest_even():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(10_000) * 10.0 ** rng.integers(-30, 30, 10_000)).astype(np.float32)
    x = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)     # bf16-representable
    assert np.isfinite(x).all()
    payload = encode("bf16", {"w": x})[0]
    assert payload["leaves"][0]["kind"] == "bf16" and payload["leaves"][0]["bits"].dtype == np.uint16
    out = decode(payload)["w"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x)
    # Ties: 1 + 2**-8 lies halfway between 1 and 1 + 2**-7 -> even mantissa (1.0);
    # 1 + 3 * 2**-8 halfway between 1 + 2**-7 (odd) and 1 + 2**-6 (even) -> 1 + 2**-6.
    ties = np.array([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8)] + [0.0] * 61, np.float32)
    out = decode(encode("bf16", {"w": ties})[0])["w"]
    np.testing.assert_array_equal(out[:3], np.float32([1.0, 1 + 2**-6, -1.0]))
    # Any float32: relative error <= 2**-8 (unit roundoff), the same bits as ml_dtypes'.
    y = rng.standard_normal(5000).astype(np.float32)
    payload = encode("bf16", {"w": y})[0]
    out = decode(payload)["w"]
    assert np.all(np.abs(out - y) <= np.abs(y) * 2.0**-8)
    np.testing.assert_array_equal(payload["leaves"][0]["bits"],
                                  y.astype(ml_dtypes.bfloat16).view(np.uint16))


@pytest.mark.parametrize("spec, levels", [({"name": "int8", "block": 64}, 127),
                                          ({"name": "int8", "block": 0}, 127),
                                          ({"name": "quant", "bits": 3, "block": 64}, 3),
                                          ({"name": "quant", "bits": 2, "block": 0}, 1)])
def test_stochastic_rounding_is_unbiased(spec, levels):
    """Mean of N=2000 decodes vs x, with the exact standard error of the mean
    SE = s sqrt(p (1 - p) / N) (s: the block's scale, p: fractional part of x/s):
    every |mean - x| <= 5 SE (+ 1e-5 s for float32 rounding; values on a level,
    p = 0, come back exactly), and where the normal approximation holds
    (p (1 - p) >= 0.05) the mean of z**2 = ((mean - x) / SE)**2 is 1 +- 0.3
    (about 250 values: chi-square sd ~0.09)."""
    rng = np.random.default_rng(2)
    block = spec["block"]
    if block:       # blocks of 64 values of one magnitude each (1e-6 .. 50)
        x = rng.standard_normal(320) * np.repeat([1e-3, 1.0, 50.0, 1e-6, 3.0], 64)
    else:
        x = rng.standard_normal(300)
    x = x.astype(np.float32)
    codec = make_codec(spec)
    n = 2000
    draws = np.empty((n, x.size), np.float64)
    enc_rng = np.random.default_rng(3)
    for i in range(n):
        draws[i] = decode(codec.encode({"w": x}, enc_rng, None)[0])["w"]
    leaf = codec.encode({"w": x}, enc_rng, None)[0]["leaves"][0]
    assert leaf["scale"].size == (x.size // 64 if block else 1)
    scale = np.repeat(leaf["scale"].astype(np.float64), leaf["block"])[:x.size]
    if "q" in leaf:
        assert np.all(np.abs(leaf["q"].astype(int)) <= levels)
    else:   # bit-packed codes q + L in [0, 2L]
        from fedjax_grid.compression.quant import unpack
        assert leaf["planes"].shape == (spec["bits"], math.ceil(x.size / 8))
        assert unpack(leaf["planes"], x.size).max() <= 2 * levels
    block_max = np.abs(x.reshape(-1, leaf["block"])).max(1)
    np.testing.assert_allclose(leaf["scale"] * levels, block_max, rtol=1e-6)
    assert np.all(np.abs(draws - x) <= scale * (1 + 1e-5))     # one level at most
    frac = np.mod(x / scale, 1.0)
    se = scale * np.sqrt(frac * (1 - frac) / n)
    err = np.abs(draws.mean(0) - x)
    assert np.all(err <= 5 * se + 1e-5 * scale)
    normal = frac * (1 - frac) >= 0.05
    assert normal.sum() > 200
    z = err[normal] / se[normal]
    assert abs(np.mean(z ** 2) - 1.0) < 0.3


@pytest.mark.parametrize("values", ["float32", "bf16"])
def test_topk_error_feedback_loses_nothing(values):
    """Sum over rounds of the decoded payloads + the final residual == sum of the updates."""
    codec = make_codec({"name": "topk", "fraction": 0.05, "values": values})
    rounds = 20
    rng = np.random.default_rng(4)
    template = million_tree()
    template = {"conv": template["conv"][..., :8], "bn": template["bn_scale"],
                "head": template["head"][:100], "step": np.int64(0)}
    state = codec.init_state(template)
    total_true = {k: np.zeros(v.shape, np.float64) for k, v in template.items()}
    total_sent = {k: np.zeros(v.shape, np.float64) for k, v in template.items()}
    for r in range(rounds):
        upd = {"conv": rng.standard_normal(template["conv"].shape).astype(np.float32),
               "bn": rng.standard_normal(48).astype(np.float32),
               "head": (rng.standard_normal(template["head"].shape) * 1e-2).astype(np.float32),
               "step": np.int64(r)}
        payload, state = codec.encode(upd, None, state if r else None)
        sent = decode(payload)
        for k in ("conv", "head"):
            leaf = payload["leaves"][list(template).index(k)]
            assert leaf["kind"] == "topk"
            assert leaf["index"].size == math.ceil(0.05 * upd[k].size)
            assert np.count_nonzero(sent[k]) <= leaf["index"].size
        for k in total_true:
            total_true[k] += upd[k]
            total_sent[k] += sent[k]
    for k in ("conv", "bn", "head"):
        got = total_sent[k] + state["residual"][k]
        scale = np.abs(total_true[k]).max()
        np.testing.assert_allclose(got, total_true[k], rtol=0, atol=1e-5 * scale, err_msg=k)
    assert not np.any(state["residual"]["bn"])          # 48 < raw_below: always sent whole
    # The state is a plain tree of float32 arrays (checkpointable, picklable).
    for leaf in flatten(state)[1]:
        assert isinstance(leaf, np.ndarray)
    assert state["residual"]["conv"].dtype == np.float32
    restored = pickle.loads(pickle.dumps(state))
    np.testing.assert_array_equal(restored["residual"]["head"], state["residual"]["head"])


def test_residual_per_logical_client_across_sampling_and_rejections():
    """The protocol the package doc states: one state per client id, kept between rounds;
    a client not sampled keeps it, a rejected update leaves the old one in place. Per
    client: sum of accepted payloads + residual == sum of accepted updates."""
    codec = make_codec("topk(0.02)")
    rng = np.random.default_rng(6)
    states = {c: None for c in range(5)}                 # None until first sampled
    sent = {c: np.zeros(4000) for c in states}
    true = {c: np.zeros(4000) for c in states}
    for r in range(12):
        for c in rng.choice(5, size=2, replace=False):   # two clients sampled per round
            update = {"w": rng.standard_normal(4000).astype(np.float32)}
            payload, new_state = codec.encode(update, None, states[c])
            if r == 5:                                   # e.g. rejected by validation
                continue
            states[c] = new_state
            sent[c] += decode(payload)["w"]
            true[c] += update["w"]
    for c, state in states.items():
        residual = 0.0 if state is None else state["residual"]["w"]
        np.testing.assert_allclose(sent[c] + residual, true[c], rtol=0, atol=1e-4)


def test_topk_sends_the_largest_of_update_plus_residual():
    codec = make_codec("topk(0.1)")
    x = np.arange(1, 101, dtype=np.float32)                 # top 10: 91..100
    payload, state = codec.encode({"w": x}, None, None)
    np.testing.assert_array_equal(payload["leaves"][0]["index"], np.arange(90, 100))
    assert payload["leaves"][0]["index"].dtype == np.int32
    # Next round: a zero update; the residual's largest (81..90) go now.
    payload, state = codec.encode({"w": np.zeros(100, np.float32)}, None, state)
    np.testing.assert_array_equal(payload["leaves"][0]["index"], np.arange(80, 90))
    np.testing.assert_array_equal(state["residual"]["w"][:80], x[:80])


def test_non_finite_leaves_are_sent_raw():
    x = np.ones(1000, np.float32)
    x[5] = np.nan
    for spec in ("bf16", "int8", "topk(0.01)"):
        payload, _ = encode(spec, {"w": x}, np.random.default_rng(0))
        assert payload["leaves"][0]["kind"] == "raw"
        out = decode(payload)["w"]
        assert np.isnan(out[5]) and np.all(out[np.arange(1000) != 5] == 1)


@pytest.mark.parametrize("spec", SPECS)
def test_same_seed_same_payload_bytes(spec):
    tree = million_tree()
    codec = make_codec(spec)
    a = pickle.dumps(codec.encode(tree, np.random.default_rng(11), None)[0], protocol=5)
    b = pickle.dumps(codec.encode(tree, np.random.default_rng(11), None)[0], protocol=5)
    assert a == b
    if spec.startswith("int8"):
        c = pickle.dumps(codec.encode(tree, np.random.default_rng(12), None)[0], protocol=5)
        assert a != c


def test_codecs_pickle_and_refuse_named_tuples():
    import collections
    codec = pickle.loads(pickle.dumps(make_codec("topk(0.02)")))
    tree = million_tree()
    a = codec.encode(tree, None, None)[0]
    b = make_codec("topk(0.02)").encode(tree, None, None)[0]
    assert pickle.dumps(a) == pickle.dumps(b)
    pair = collections.namedtuple("Pair", "a b")
    with pytest.raises(TypeError, match="Pair"):
        encode("none", {"x": pair(np.zeros(3), np.ones(3))})


def test_int8_needs_an_rng():
    with pytest.raises(ValueError, match="rng"):
        encode("int8", million_tree(), None)


def test_byte_counts_match_the_formats():
    """On a 1.01 M-parameter tree: the measured ratio to float32 vs what the format implies."""
    tree = million_tree()
    leaves = flatten(tree)[1]
    n = sum(x.size for x in leaves)
    big = [x.size for x in leaves if x.size >= 64]           # compressed leaves
    small = n - sum(big)                                     # raw (bn_scale: 48)
    f32 = tree_nbytes_float32(tree)
    assert f32 == 4 * n and n > 1_000_000
    implied = {
        "none": 4 * n,
        "bf16": 2 * sum(big) + 4 * small,
        "int8": sum(s + 4 * math.ceil(s / 256) for s in big) + 4 * small,
        "quant(3)": sum(3 * math.ceil(s / 8) + 4 * math.ceil(s / 512) for s in big) + 4 * small,
        "quant(bits=4, block=256)": sum(4 * math.ceil(s / 8) + 4 * math.ceil(s / 256)
                                        for s in big) + 4 * small,
        "topk(0.01)": sum(8 * math.ceil(0.01 * s) for s in big) + 4 * small,
        "topk(0.01, values=bf16)": sum(6 * math.ceil(0.01 * s) for s in big) + 4 * small,
    }
    rng = np.random.default_rng(0)
    measured = {}
    for spec, expect in implied.items():
        payload, _ = encode(spec, tree, rng)
        got = payload_nbytes(payload)
        assert expect <= got <= expect + 2000, (spec, got, expect)     # + keys, shapes, names
        # payload_nbytes is what pickling costs, within 1 % (Dask's own framing aside).
        assert abs(len(pickle.dumps(payload, protocol=5)) - got) <= 0.01 * got + 1500
        measured[spec] = f32 / got
    assert measured["none"] == pytest.approx(1.0, abs=1e-3)
    assert measured["bf16"] == pytest.approx(2.0, rel=5e-3)
    assert measured["int8"] == pytest.approx(4 / (1 + 4 / 256), rel=5e-3)      # 3.94x
    assert measured["quant(3)"] == pytest.approx(32 / (3 + 32 / 512), rel=5e-3)     # 10.4x
    assert measured["quant(bits=4, block=256)"] == pytest.approx(32 / (4 + 32 / 256), rel=5e-3)
    assert measured["topk(0.01)"] == pytest.approx(50.0, rel=0.02)
    assert measured["topk(0.01, values=bf16)"] == pytest.approx(200 / 3, rel=0.02)


@pytest.mark.parametrize("spec, path, words", [
    ("topk(0)", "compression.fraction", "a finite number in (0, 1] is required"),
    ("topk(1.5)", "compression.fraction", "a finite number in (0, 1] is required"),
    ({"name": "topk", "values": "fp8"}, "compression.values", "float32"),
    ({"name": "int8", "block": -1}, "compression.block", "an integer in [0, 2147483647] is required"),
    ({"name": "int8", "blocks": 4}, "compression.blocks", "unknown config key"),
    ("zip", "compression.name", "allowed are none, bf16, int8, quant, topk"),
    ("quant(9)", "compression.bits", "=9 is invalid: an integer in [2, 8] is required"),
    ("quant(1)", "compression.bits", "=1 is invalid: an integer in [2, 8] is required"),
    ({"name": "bf16", "raw_below": "x"}, "compression.raw_below", "integer"),
])
def test_bad_parameters_give_one_line_user_errors_with_the_path(spec, path, words):
    with pytest.raises(UserError) as info:
        make_codec(spec)
    assert info.value.path == path
    assert "\n" not in str(info.value) and words in str(info.value)


def test_validate_completes_defaults_and_shorthand():
    assert CODECS.validate("topk(0.02)", "c") == {"name": "topk", "fraction": 0.02,
                                                  "values": "float32", "raw_below": 64}
    assert make_codec("int8").spec == {"name": "int8", "block": 256, "raw_below": 64}
    assert init_state("bf16", small_tree()) is None
    assert make_codec("topk").stateful and not make_codec("int8").stateful


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("n", [1, 7, 8, 1001])
def test_quant_bit_planes_round_trip(bits, n):
    from fedjax_grid.compression.quant import pack, unpack
    codes = np.random.default_rng(n).integers(0, 2 ** bits, n).astype(np.uint8)
    planes = pack(codes, bits)
    assert planes.shape == (bits, math.ceil(n / 8)) and planes.dtype == np.uint8
    np.testing.assert_array_equal(unpack(planes, n), codes)


def test_quant_error_feedback_loses_nothing_and_keeps_the_residual_within_one_level():
    """quant(3, feedback): sum of decoded payloads + residual == sum of updates, and the
    residual is the last rounding error only (|residual| <= one level of its block)."""
    codec = make_codec("quant(bits=3, feedback=true)")
    assert codec.stateful and not make_codec("quant(3)").stateful
    rng, enc_rng = np.random.default_rng(5), np.random.default_rng(6)
    shapes = {"conv": (3, 3, 8, 16), "head": (100, 10), "bn": (48,)}
    state = None
    total_true = {k: np.zeros(s, np.float64) for k, s in shapes.items()}
    total_sent = {k: np.zeros(s, np.float64) for k, s in shapes.items()}
    for _ in range(20):
        upd = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
        payload, state = codec.encode(upd, enc_rng, state)
        sent = decode(payload)
        for k in shapes:
            total_true[k] += upd[k]
            total_sent[k] += sent[k]
    for k in shapes:
        got = total_sent[k] + state["residual"][k]
        np.testing.assert_allclose(got, total_true[k], rtol=0,
                                   atol=1e-5 * np.abs(total_true[k]).max(), err_msg=k)
    leaf = payload["leaves"][0]                          # conv: 1152 values, blocks of 512
    level = np.repeat(leaf["scale"], leaf["block"])[:1152].reshape(shapes["conv"])
    assert np.all(np.abs(state["residual"]["conv"]) <= level * (1 + 1e-5))
    assert np.abs(state["residual"]["conv"]).max() > 0
    assert not np.any(state["residual"]["bn"])          # 48 < raw_below: sent whole
