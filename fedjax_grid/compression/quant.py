"""``quant(bits)``: unbiased stochastic rounding to ``2**(bits-1) - 1`` levels a side, bit-packed.

The ``int8`` scheme (QSGD / FedPAQ style) at any width from 2 to 8 bits: each
floating leaf is cut into blocks of ``block`` values (``block=0``: one per leaf);
with ``L = 2**(bits-1) - 1`` and ``s = max|x| / L`` per block, each value is sent
as ``q = floor(x / s + u)``, ``u ~ U[0, 1)``, so ``E[q * s] = x`` (**unbiased**,
variance ``<= s**2 / 4`` per value) and ``|q| <= L``. ``q + L`` fits in ``bits``
unsigned bits and is packed bit plane by bit plane (``np.packbits``): plane ``i``
holds bit ``i`` of every value, ``ceil(n / 8)`` bytes each.

=====  ======  ===========================  =====================================
bits   levels  bytes / parameter (block B)  vs float32 at B = 512
=====  ======  ===========================  =====================================
8      +-127   1 + 4/B                      3.97x (the ``int8`` codec's rounding)
4      +-7     0.5 + 4/B                    7.88x
3      +-3     0.375 + 4/B                  10.4x
2      +-1     0.25 + 4/B                   15.5x (ternary, TernGrad-like)
=====  ======  ===========================  =====================================

Fewer bits cost variance, not bias: the step is ``max|x| / L`` of the block, so
the noise of 3 bits is ~42x (std) that of 8 bits. Encoding draws one float32
uniform per value from ``rng``, leaf after leaf: the same seed gives the same bytes.

``feedback=True`` adds error feedback (as ``topk`` has): the client's rounding error
``acc - decode(payload)`` with ``acc = update + residual`` is kept as its residual
and added to its next update, so ``sum of decoded payloads + residual == sum of
updates`` (up to float32 rounding) and the rounding noise does not pile up over
rounds; the payload is then no longer unbiased for one round. State:
``{'residual': tree}`` per logical client, kept like top-k's (see the package doc).
"""
from __future__ import annotations

import functools

import numpy as np
from pydantic import Field

from fedjax_grid.compression.base import (CODECS, Codec, encode_with_feedback,
                                          flatten, make_payload, no_state, raw_below_field,
                                          raw_leaf, send_raw)
from fedjax_grid.compression.int8 import round_blocks, unround_blocks
from fedjax_grid.registry import Params


class QuantParams(Params):
    bits: int = Field(4, ge=2, le=8, description="bits per value (levels 2**(bits-1) - 1 a side)")
    block: int = Field(512, ge=0, le=2 ** 31 - 1,
                       description="values per float32 scale (0: one scale per tensor)")
    feedback: bool = Field(False, description="error feedback: keep each client's rounding "
                                              "error and add it to its next update")
    raw_below: int = raw_below_field()


def levels(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """uint8 codes (< 2**bits) -> ``bits`` packed bit planes, ``(bits, ceil(n/8))`` uint8."""
    return np.stack([np.packbits((codes >> i) & 1) for i in range(bits)])


def unpack(planes: np.ndarray, n: int) -> np.ndarray:
    """The inverse of :func:`pack`: ``(n,)`` uint8 codes."""
    codes = np.zeros(n, np.uint8)
    for i, plane in enumerate(planes):
        codes |= np.unpackbits(plane, count=n) << np.uint8(i)
    return codes


def encode_leaf(x: np.ndarray, rng: np.random.Generator, bits: int, block: int) -> dict:
    lv = levels(bits)
    q, scale, b = round_blocks(x, rng, lv, block)
    return {"kind": "quant", "bits": int(bits), "n": int(q.size),
            "planes": pack((q + lv).astype(np.uint8), bits), "scale": scale, "block": b,
            "shape": tuple(int(d) for d in x.shape), "dtype": x.dtype.str}


def decode_leaf(leaf: dict) -> np.ndarray:
    q = unpack(leaf["planes"], leaf["n"]).astype(np.float32) - np.float32(levels(leaf["bits"]))
    return unround_blocks(q, leaf["scale"], leaf["block"], leaf)



def encode(tree, rng, state=None, *, params: QuantParams):
    """``(payload, state)``; ``rng`` (required) draws the rounding; ``state``: None, or with
    ``feedback`` the client's ``{'residual': tree}`` (None: zeros)."""
    if rng is None:
        raise ValueError("the quant codec rounds stochastically: pass rng=np.random.default_rng(seed)")
    if not params.feedback:
        skeleton, leaves = flatten(tree)
        out = [raw_leaf(x) if send_raw(x, params.raw_below)
               else encode_leaf(x, rng, params.bits, params.block) for x in leaves]
        return make_payload("quant", skeleton, out), None

    def encode_acc(acc, dtype):
        leaf = encode_leaf(acc.astype(dtype, copy=False), rng, params.bits, params.block)
        return leaf, np.subtract(acc, decode_leaf(leaf), dtype=np.float32)
    return encode_with_feedback("quant", tree, state, params.raw_below, encode_acc)


@CODECS.register("quant", QuantParams, leaf_decoder=decode_leaf)
def quant(params: QuantParams) -> Codec:
    """2-8 bit stochastic rounding, unbiased, bit-packed, a float32 scale per block
    (quant(3): 10.4x, quant(4): 7.9x at block=512)."""
    if params.feedback:
        from fedjax_grid.compression.topk import init_state
        return Codec("quant", params, functools.partial(encode, params=params),
                     init_state=init_state, stateful=True)
    return Codec("quant", params, functools.partial(encode, params=params), init_state=no_state)
