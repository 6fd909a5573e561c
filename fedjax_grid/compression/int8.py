"""``int8``: unbiased stochastic rounding to 255 levels with per-block scales (QSGD / FedPAQ style).

Each floating leaf is flattened and cut into blocks of ``block`` consecutive
values (the last one shorter; ``block=0``: one block per leaf, a per-tensor
scale). For a block with ``s = max|x| / 127`` each value is sent as
``q = floor(x / s + u)``, ``u ~ U[0, 1)`` drawn from ``rng``, so ``q`` is one of the
two integers around ``x / s`` with ``E[q] = x / s``: the decoded ``q * s`` is an
**unbiased** estimate of ``x`` with variance ``<= s**2 / 4`` per value, and
``|q| <= 127`` always. A block of zeros is sent as zeros (scale 0).

Bytes: 1 per parameter plus a float32 scale per block: with ``block=256``,
``4 / (1 + 4/256) = 3.94x`` fewer than float32. Encoding draws one float32
uniform per value, leaf after leaf in tree order: the same ``rng`` seed gives the
same payload bytes.
"""
from __future__ import annotations

import functools

import numpy as np
from pydantic import Field

from fedjax_grid.compression.base import (CODECS, Codec, flatten, make_payload,
                                          no_state, raw_below_field, raw_leaf, send_raw)
from fedjax_grid.registry import Params

LEVELS = 127


class Int8Params(Params):
    block: int = Field(256, ge=0, le=2 ** 31 - 1,
                       description="values per scale (0: one scale per tensor)")
    raw_below: int = raw_below_field()


def _blocks(n: int, block: int) -> tuple[int, int]:
    """(block size, number of blocks) of a leaf of ``n`` values."""
    b = n if block <= 0 or block >= n else block
    return b, -(-n // b)


def round_blocks(x: np.ndarray, rng: np.random.Generator, levels: int, block: int
                 ) -> tuple[np.ndarray, np.ndarray, int]:
    """Unbiased stochastic rounding of ``x`` to ``levels`` a side per block:
    ``(q, scale, block size)``, ``q`` float32 integers in [-levels, levels] (flat, n
    values), ``scale`` (float32, one per block) with ``E[q * scale] = x``."""
    flat = np.asarray(x, dtype=np.float32).reshape(-1)
    n = flat.size
    b, nb = _blocks(n, block)
    pad = nb * b - n
    xs = (np.concatenate([flat, np.zeros(pad, np.float32)]) if pad else flat).reshape(nb, b)
    scale = np.max(np.abs(xs), axis=1) / np.float32(levels)           # (nb,) float32
    inv = np.divide(np.float32(1), scale, out=np.zeros_like(scale), where=scale > 0)
    y = xs * inv[:, None]                                              # in [-levels, levels]
    y += rng.random(y.shape, dtype=np.float32)
    np.floor(y, out=y)
    np.clip(y, -levels, levels, out=y)      # float rounding of x/s can reach levels + ulp
    return y.reshape(-1)[:n], scale, int(b)


def unround_blocks(q: np.ndarray, scale: np.ndarray, b: int, leaf: dict) -> np.ndarray:
    """``q * scale`` per block, in the leaf's shape and dtype (the inverse of
    :func:`round_blocks` up to the rounding)."""
    n, nb = q.size, scale.size
    pad = nb * b - n
    qs = np.concatenate([q, np.zeros(pad, q.dtype)]) if pad else q
    out = qs.reshape(nb, b).astype(np.float32)
    out *= scale[:, None]
    out = out.reshape(-1)[:n].reshape(leaf["shape"])
    return out.astype(np.dtype(leaf["dtype"]), copy=False)


def encode_leaf(x: np.ndarray, rng: np.random.Generator, block: int) -> dict:
    q, scale, b = round_blocks(x, rng, LEVELS, block)
    return {"kind": "int8", "q": q.astype(np.int8), "scale": scale, "block": b,
            "shape": tuple(int(d) for d in x.shape), "dtype": x.dtype.str}


def decode_leaf(leaf: dict) -> np.ndarray:
    return unround_blocks(leaf["q"], leaf["scale"], leaf["block"], leaf)



def encode(tree, rng, state=None, *, params: Int8Params):
    """``(payload, None)``; ``rng`` (required) draws the rounding, ``state`` is unused."""
    if rng is None:
        raise ValueError("the int8 codec rounds stochastically: pass rng=np.random.default_rng(seed)")
    skeleton, leaves = flatten(tree)
    out = [raw_leaf(x) if send_raw(x, params.raw_below) else encode_leaf(x, rng, params.block)
           for x in leaves]
    return make_payload("int8", skeleton, out), None


@CODECS.register("int8", Int8Params, leaf_decoder=decode_leaf)
def int8(params: Int8Params) -> Codec:
    """8-bit stochastic rounding, unbiased, a float32 scale per block (3.94x at block=256)."""
    return Codec("int8", params, functools.partial(encode, params=params), init_state=no_state)
