"""Mixed precision of the models: ``'f32'`` or ``'bf16'`` compute, always f32 weights.

``precision='bf16'`` is a compute policy only: parameters, optimizer state,
aggregation, deltas, the loss and BatchNorm statistics stay float32. Two
implementations, picked by the model's fast path (``fast_paths.resolve_fast_path``):

* **fast path (XLA:CPU)**: activations stay float32; the matmuls round their two
  operands to bfloat16 and accumulate in float32: Dense layers
  (:func:`bf16_dot_general`, forward and both gradients) and the convs on maps up to
  ``fast_paths.PATCHES_MAX_SPATIAL_BF16`` and all 1x1 convs (:func:`bf16_conv`:
  forward and input gradient as matmuls over W-patches, kernel gradient float32).
  Why not bf16 activations: XLA:CPU has native bf16 only in its dot kernels (bf16 x
  bf16 -> f32, AVX512-BF16); a bf16 convolution, a bf16 x bf16 -> bf16 dot and bf16
  elementwise ops or copies are computed by converting to float32 and back, which is
  slower than float32 throughout (the profile in docs/RESULTS.md shows it: a bf16 pad,
  slice or concatenate becomes convert, move, convert back).
  46 % of VGG-16's and 63 % of MobileNetV3-Small's multiply-adds run as bf16 dots (the
  per-op profile, docs/RESULTS.md "Where a bf16 train step's time goes on XLA:CPU"); on a
  CPU without a native bf16 matmul (AVX2) a bf16 step is slower than f32, 0.78-0.92x
  ("Client throughput in bf16 vs f32"). Convolutions on
  larger maps (``nn.Conv``: XLA's float32 conv kernel is already at the f32 matmul
  peak there, and patches would cost more than bf16 saves) and the depthwise
  shifted-slice convs compute in float32.
* **stock path (accelerators)**: Flax's own mixed precision, ``dtype=bfloat16`` on
  every conv, dense and norm layer with ``param_dtype=float32`` (convolutions run
  natively in bf16 there); BatchNorm's mean and variance are reduced in float32
  (Flax's ``force_float32_reductions``) and its running averages stay float32.

Models that support it declare a ``precision`` field; :func:`with_precision` returns
the model to train (a clone with that field set).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from fedjax_grid.errors import UserError

#: Allowed compute precisions.
PRECISIONS = ("f32", "bf16")


def check_precision(precision) -> str:
    """``precision`` if allowed, else a one-line ``UserError``."""
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def emulated_bf16_warning(reports: dict) -> str | None:
    """One line naming the workers where bf16 compute is emulated (a CPU backend without
    a native bf16 matmul), or None. ``reports``: worker address -> ``{'backend',
    'native_bf16'}`` (``grid.plugin.bf16_support`` run on each worker)."""
    slow = sorted(a for a, r in reports.items()
                  if isinstance(r, dict) and r.get("backend") == "cpu" and not r.get("native_bf16"))
    if not slow:
        return None
    return (f"training.precision=bf16 on {len(slow)} of {len(reports)} workers whose CPUs have no "
            f"native bf16 matmul (avx512_bf16 or amx_bf16; e.g. {slow[0]}): XLA converts to "
            "float32 there, so a bf16 step is slower than f32 on them (measured: "
            "docs/RESULTS.md, \"Client throughput in bf16 vs f32\"); f32 is the faster choice")


def with_precision(model, precision: str):
    """``model`` computing in ``precision`` (a clone with its ``precision`` field set).

    'f32' returns ``model`` itself; 'bf16' needs a model with a ``precision`` field
    (every registered model has one), else a ``UserError`` names the model.
    """
    check_precision(precision)
    current = getattr(model, "precision", None)
    if current == precision or (current is None and precision == "f32"):
        return model
    if current is None:
        raise UserError(f"model {type(model).__name__} has no 'precision' field, so it cannot "
                        f"train with precision {precision!r}; allowed: f32")
    return model.clone(precision=precision)


def layer_dtype(precision: str, fast: bool):
    """The Flax ``dtype`` of a model's layers: bfloat16 for bf16 on the stock path, else None."""
    return jnp.bfloat16 if check_precision(precision) == "bf16" and not fast else None


def fast_bf16(precision: str, fast: bool) -> bool:
    """Whether a model's matmuls and patch convs take bf16 operands (bf16 on the fast path)."""
    return check_precision(precision) == "bf16" and fast


def layer_dot_general(precision: str, fast: bool):
    """The ``dot_general`` of a model's Dense layers: :func:`bf16_dot_general` for bf16 on
    the fast path, else None (``lax.dot_general``)."""
    return bf16_dot_general if fast_bf16(precision, fast) else None


# ------------------------------------------------------------ bf16 x bf16 -> f32

_F32 = jnp.float32
_BF16 = jnp.bfloat16


def _mm(a, b, contract):
    """(M, K) x (K, N) bf16 contraction on ``contract`` dims, accumulated and returned in f32."""
    return lax.dot_general(a, b, (contract, ((), ())), preferred_element_type=_F32)


@jax.custom_vjp
def _matmul(x, w):
    """x (M, K) f32 @ w (K, N) f32 -> (M, N) f32, with bf16 operands."""
    return _mm(x.astype(_BF16), w.astype(_BF16), ((1,), (0,)))


def _matmul_fwd(x, w):
    x16, w16 = x.astype(_BF16), w.astype(_BF16)
    return _mm(x16, w16, ((1,), (0,))), (x16, w16)


def _matmul_bwd(res, g):
    x16, w16 = res
    g16 = g.astype(_BF16)
    return _mm(g16, w16, ((1,), (1,))), _mm(x16, g16, ((0,), (0,)))


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def bf16_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """``lax.dot_general`` for ``lhs (..., K) . rhs (K, N)`` with bf16 operands, f32 result.

    Operands are rounded to bfloat16 and the products accumulated in float32; the
    gradients are the same kind of dot (the incoming cotangent rounded to bf16), returned
    as float32. Only the contraction of lhs's last axis with rhs's first, no batch axes
    (what ``nn.Dense`` and the patches conv use), is supported; ``precision`` and
    ``preferred_element_type`` are accepted for Flax's call signature and ignored.
    """
    (lc, rc), (lb, rb) = dimension_numbers
    if tuple(lc) != (lhs.ndim - 1,) or tuple(rc) != (0,) or rhs.ndim != 2 or lb or rb:
        raise UserError(f"bf16_dot_general supports lhs (..., K) . rhs (K, N) only, got "
                        f"dimension_numbers {dimension_numbers} for shapes {lhs.shape}, {rhs.shape}")
    k, n = rhs.shape
    y = _matmul(lhs.astype(_F32).reshape(-1, k), rhs.astype(_F32))
    return y.reshape(*lhs.shape[:-1], n)


# ------------------------------------------------------------------ bf16 conv

def _row_patches(xp, kw: int, ow: int):
    """(N, Hp, ow, kw*C): the kw shifted windows along W of padded NHWC ``xp``, on channels."""
    n, hp, _, c = xp.shape
    slices = [lax.slice(xp, (0, 0, j, 0), (n, hp, j + ow, c)) for j in range(kw)]
    return slices[0] if kw == 1 else jnp.concatenate(slices, axis=-1)


def _conv_rows(x, kernel, pads):
    """Stride-1 NHWC conv of f32 ``x`` (N, H, W, C) with f32 ``kernel`` (kh, kw, C, F):
    kh matmuls of bf16 W-patches (N*oh*ow, kw*C) by bf16 kernel rows (kw*C, F), summed
    in float32. pads: ((lo, hi), (lo, hi)), negative values crop.

    The padding, shifted slices and concatenation run in float32 and each matmul operand
    is rounded to bf16 once, right before its dot: XLA:CPU has no bf16 data movement (it
    wraps a bf16 pad, slice or concatenate in converts to f32 and back), and rounding
    commutes with moving data, so the result is bitwise the same as rounding first."""
    kh, kw, c, f = kernel.shape
    xp = lax.pad(x.astype(_F32), jnp.array(0, _F32),
                 [(0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)])
    oh, ow = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    rows = _row_patches(xp, kw, ow)
    y = None
    for i in range(kh):
        lhs = rows[:, i:i + oh].reshape(-1, kw * c).astype(_BF16)
        part = _mm(lhs, kernel[i].reshape(kw * c, f).astype(_BF16), ((1,), (0,)))
        y = part if y is None else y + part
    return y.reshape(x.shape[0], oh, ow, f)


def _conv_f32(x, kernel, pads):
    return lax.conv_general_dilated(x, kernel, (1, 1), pads,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def bf16_conv(x, kernel, pads):
    """Stride-1 2-D conv, NHWC x (N, H, W, C) f32, kernel (kh, kw, C, F) f32 -> f32
    (N, H + lo + hi - kh + 1, ..., F), with bf16 operands and float32 accumulation.

    Forward and input gradient are kh matmuls over W-patches (:func:`_conv_rows`; the
    input gradient is the same conv of the output gradient with the flipped, transposed
    kernel); the kernel gradient is XLA's float32 conv gradient (on XLA:CPU a bf16 one is
    no faster: its operands need transposing, and bf16 data movement is slow there).
    pads: ((lo, hi), (lo, hi)) per spatial dim (a hashable tuple).
    """
    return _conv_rows(x, kernel, pads)


def _bf16_conv_fwd(x, kernel, pads):
    return _conv_rows(x, kernel, pads), (x, kernel)


def _bf16_conv_bwd(pads, res, g):
    x, kernel = res
    kh, kw = kernel.shape[:2]
    back = ((kh - 1 - pads[0][0], kh - 1 - pads[0][1]), (kw - 1 - pads[1][0], kw - 1 - pads[1][1]))
    flipped = jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))
    dx = _conv_rows(g, flipped, back)
    _, vjp = jax.vjp(lambda k: _conv_f32(x, k, pads), kernel)
    return dx, vjp(g)[0]


bf16_conv.defvjp(_bf16_conv_fwd, _bf16_conv_bwd)
