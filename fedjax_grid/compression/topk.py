"""``topk(fraction)``: per-leaf top-k sparsification with error feedback (Deep Gradient Compression).

Per floating leaf of ``n`` values, ``k = max(1, ceil(fraction * n))`` entries of
largest magnitude of ``acc = update + residual`` are sent as ``int32`` flat
indices (sorted ascending) and their values; the new residual is ``acc`` with
those entries set to zero, i.e. exactly what was not sent, and it is added to
the next update of the same client before selection. Nothing is lost over rounds:
``sum of decoded payloads + final residual == sum of updates`` (up to the float32
rounding of the additions ``update + residual``).

Selection is **per leaf** (``np.argpartition`` on each leaf's ``|acc|``), not one
global top-k over the concatenated tree: every layer gets its share of each
update whatever the scale of its values (a global cut would starve layers whose
updates are small in absolute terms, e.g. the wide convolutions' vs the
classifier's), as DGC does with layer-wise thresholds. Ties at the cut are
broken by ``argpartition`` (deterministic for the same input).

Values are ``float32`` (``values='float32'``: 8 bytes per kept entry, ``fraction``
0.01 -> 50x fewer bytes than float32) or bfloat16 (``values='bf16'``: 6 bytes,
66.7x); with bf16 values the rounding error of each sent value stays in the
residual too (``acc - bf16(acc)`` is exact in float32), so error feedback still
loses nothing. Deterministic: ``rng`` is unused.

State: ``{'residual': tree}``, a float32 tree of the update's structure (zeros
for leaves sent raw); ``None`` is taken as all zeros. See the package doc for
where the residual of a client lives.
"""
from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np
from pydantic import Field

from fedjax_grid.compression.base import (CODECS, Codec, encode_with_feedback,
                                          flatten, raw_below_field, unflatten)
from fedjax_grid.compression.bf16 import from_bf16_bits, to_bf16_bits
from fedjax_grid.registry import Params


class TopkParams(Params):
    fraction: float = Field(0.01, gt=0.0, le=1.0, description="share of each leaf's entries sent")
    values: Literal["float32", "bf16"] = Field("float32", description="dtype of the sent values")
    raw_below: int = raw_below_field()


def leaf_k(n: int, fraction: float) -> int:
    return min(n, max(1, math.ceil(fraction * n)))


def encode_leaf(acc: np.ndarray, fraction: float, values: str, dtype: str = "<f4"
                ) -> tuple[dict, np.ndarray]:
    """(leaf payload, residual) of one float32 leaf ``acc`` (update + old residual)."""
    flat = acc.reshape(-1)
    n = flat.size
    k = leaf_k(n, fraction)
    if k < n:
        idx = np.argpartition(np.abs(flat), n - k)[n - k:]
        idx.sort()
    else:
        idx = np.arange(n)
    idx = idx.astype(np.int32)
    sent = flat[idx]
    residual = flat.copy()
    if values == "bf16":
        bits = to_bf16_bits(sent)
        residual[idx] = sent - from_bf16_bits(bits)        # exact: the dropped low bits
        vals = bits
    else:
        residual[idx] = 0.0
        vals = sent
    leaf = {"kind": "topk", "index": idx, "values": vals, "value_dtype": values,
            "shape": tuple(int(d) for d in acc.shape), "dtype": dtype}
    return leaf, residual.reshape(acc.shape)


def decode_leaf(leaf: dict) -> np.ndarray:
    shape = tuple(leaf["shape"])
    out = np.zeros(math.prod(shape), np.float32)
    vals = leaf["values"]
    out[leaf["index"]] = from_bf16_bits(vals) if leaf["value_dtype"] == "bf16" else vals
    return out.reshape(shape).astype(np.dtype(leaf["dtype"]), copy=False)



def init_state(tree) -> dict:
    """Zero residual: float32 zeros for floating leaves, zeros of the dtype otherwise."""
    skeleton, leaves = flatten(tree)
    zeros = [np.zeros(x.shape, np.float32 if np.issubdtype(x.dtype, np.floating) else x.dtype)
             for x in leaves]
    return {"residual": unflatten(skeleton, zeros)}


def encode(tree, rng=None, state=None, *, params: TopkParams):
    """``(payload, {'residual': tree})``; ``rng`` is unused, ``state`` ``None`` means zeros."""
    return encode_with_feedback(
        "topk", tree, state, params.raw_below,
        lambda acc, dtype: encode_leaf(acc, params.fraction, params.values, dtype))


@CODECS.register("topk", TopkParams, leaf_decoder=decode_leaf)
def topk(params: TopkParams) -> Codec:
    """Per-leaf top-k with error feedback (int32 index + float32 value: 50x at fraction 0.01)."""
    return Codec("topk", params, functools.partial(encode, params=params), init_state=init_state,
                 stateful=True)
