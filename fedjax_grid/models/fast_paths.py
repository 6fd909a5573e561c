"""XLA:CPU fast paths for convolutions that stock ``nn.Conv`` runs slowly on CPU.

On XLA:CPU two cases of ``lax.conv_general_dilated`` are far off the matmul
roofline: small-kernel convs on tiny spatial maps (VGG's last block on 32x32
input runs on 2x2 maps, ~40x slower per FLOP than at 4x4) and depthwise convs
(``feature_group_count == channels``, MobileNet). The modules here compute the
same function with other primitives:

* ``Conv3x3Patches`` (any kh x kw, named for its main use): pad, gather the
  kh*kw shifted (strided) slices, concatenate them on channels and do one
  ``dot`` with the reshaped kernel.
* ``DepthwiseConvShifted``: sum over the kh*kw shifted slices times the
  per-channel kernel tap (pure elementwise work, vectorises well).

Both declare exactly the parameters of ``nn.Conv`` -- ``'kernel'`` of shape
``(kh, kw, in_features // groups, features)`` and ``'bias'`` of shape
``(features,)`` -- so variables are interchangeable between paths. Padding
accepts what ``nn.Conv`` accepts (``'SAME'``, ``'VALID'``, an int, or
``((lo, hi), (lo, hi))``) and is resolved the same way (``lax.padtype_to_pads``).

All inputs are NHWC; outputs are NHWC with
``H_out = (H + pad_lo + pad_hi - kh) // stride + 1``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from fedjax_grid.errors import UserError
from fedjax_grid.models import precision

#: The patches+matmul conv is used in the fast path when max(H, W) of the
#: conv's input is at most this (measured on XLA:CPU, see docs/THROUGHPUT.md).
PATCHES_MAX_SPATIAL = 4
#: The same bound when the matmuls take bf16 operands (``models.precision``): XLA:CPU
#: runs bf16 only in dots, so more convs pay for their patches (chosen with
#: ``benchmarks/precision.py --patches-max``; not recorded; docs/RESULTS.md, "Client
#: throughput in bf16 vs f32", has the default's steps).
PATCHES_MAX_SPATIAL_BF16 = 8

PaddingLike = Any
Initializer = Callable[..., jax.Array]


def resolve_fast_path(fast_path: bool | None) -> bool:
    """``None`` -> on iff the default JAX backend is CPU; ``True``/``False`` force it."""
    if fast_path is None:
        return jax.default_backend() == "cpu"
    if not isinstance(fast_path, bool):
        raise UserError(f"fast_path={fast_path!r} is not allowed; use None, True or False")
    return fast_path


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise UserError(f"expected an int or a pair for a 2-D conv, got {v!r}")
    return v  # type: ignore[return-value]


def resolve_padding(padding: PaddingLike, in_hw: Sequence[int], kernel_hw: Sequence[int],
                    strides: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit ((lo, hi), (lo, hi)) pads, resolved exactly like ``nn.Conv``."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise UserError(f"padding={padding!r} is not supported by the fast path; "
                            "use 'SAME', 'VALID', an int or ((lo, hi), (lo, hi))")
        pads = lax.padtype_to_pads(tuple(in_hw), tuple(kernel_hw), tuple(strides),
                                   padding.upper())
        return tuple((int(lo), int(hi)) for lo, hi in pads)  # type: ignore[return-value]
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    pads = []
    for p in padding:
        if isinstance(p, int):
            pads.append((p, p))
        else:
            lo, hi = p
            pads.append((int(lo), int(hi)))
    if len(pads) != 2:
        raise UserError(f"padding={padding!r} must give two spatial dimensions")
    return tuple(pads)  # type: ignore[return-value]


def _shifted_slices(x: jax.Array, kernel_hw: tuple[int, int], strides: tuple[int, int],
                    pads) -> tuple[list[jax.Array], int, int]:
    """Pad NHWC ``x`` and return the kh*kw strided windows, row-major over (i, j).

    Each slice is (N, H_out, W_out, C); slice (i, j) holds x_pad[:, i + s*y, j + s*x].
    """
    kh, kw = kernel_hw
    sh, sw = strides
    x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    hp, wp = x.shape[1], x.shape[2]
    oh = (hp - kh) // sh + 1
    ow = (wp - kw) // sw + 1
    if oh <= 0 or ow <= 0:
        raise UserError(f"input {x.shape[1:3]} (padded) is smaller than kernel {kernel_hw}")
    slices = []
    for i in range(kh):
        for j in range(kw):
            slices.append(lax.slice(
                x, (0, i, j, 0),
                (x.shape[0], i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, x.shape[3]),
                (1, sh, sw, 1)))
    return slices, oh, ow


class Conv3x3Patches(nn.Module):
    """Dense conv as patches + one matmul; same params as ``nn.Conv(features, kernel_size)``.

    x: (N, H, W, C_in) -> (N, H_out, W_out, features). Kernel (kh, kw, C_in, features).
    """
    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: int | Sequence[int] = 1
    padding: PaddingLike = "SAME"
    use_bias: bool = True
    kernel_init: Initializer = nn.linear.default_kernel_init
    bias_init: Initializer = nn.initializers.zeros_init()
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    bf16: bool = False  # bf16 operands, f32 accumulation (models.precision.bf16_conv)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = _pair(self.kernel_size)
        strides = _pair(self.strides)
        cin = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (kh, kw, cin, self.features),
                            self.param_dtype)
        bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
                if self.use_bias else None)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        pads = resolve_padding(self.padding, x.shape[1:3], (kh, kw), strides)
        if self.bf16 and strides == (1, 1):
            y = precision.bf16_conv(x, kernel, pads)
        else:
            slices, oh, ow = _shifted_slices(x, (kh, kw), strides, pads)
            patches = slices[0] if len(slices) == 1 else jnp.concatenate(slices, axis=-1)
            # patches channel index (i*kw + j)*C + c matches kernel.reshape(-1, F) row order.
            dot = precision.bf16_dot_general if self.bf16 else lax.dot_general
            y = dot(patches, kernel.reshape(kh * kw * cin, self.features),
                    (((3,), (0,)), ((), ())), precision=self.precision)
        if bias is not None:
            y = y + bias
        return y


class DepthwiseConvShifted(nn.Module):
    """Depthwise conv as a sum of shifted slices; same params as
    ``nn.Conv(features, kernel_size, feature_group_count=C_in)``.

    x: (N, H, W, C_in) -> (N, H_out, W_out, features), features = m * C_in
    (output channel o reads input channel o // m, as in ``lax`` grouped conv).
    Kernel (kh, kw, 1, features).
    """
    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: int | Sequence[int] = 1
    padding: PaddingLike = "SAME"
    use_bias: bool = True
    kernel_init: Initializer = nn.linear.default_kernel_init
    bias_init: Initializer = nn.initializers.zeros_init()
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = _pair(self.kernel_size)
        strides = _pair(self.strides)
        cin = x.shape[-1]
        if self.features % cin:
            raise UserError(f"depthwise features={self.features} must be a multiple of "
                            f"the input channels {cin}")
        kernel = self.param("kernel", self.kernel_init, (kh, kw, 1, self.features),
                            self.param_dtype)
        bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
                if self.use_bias else None)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        mult = self.features // cin
        if mult > 1:
            x = jnp.repeat(x, mult, axis=-1)
        pads = resolve_padding(self.padding, x.shape[1:3], (kh, kw), strides)
        slices, _, _ = _shifted_slices(x, (kh, kw), strides, pads)
        y = None
        for idx, s in enumerate(slices):
            i, j = divmod(idx, kw)
            term = s * kernel[i, j, 0]
            y = term if y is None else y + term
        if bias is not None:
            y = y + bias
        return y


def conv2d(features: int, kernel_size: int | Sequence[int], *, strides: int = 1,
           padding: PaddingLike = "SAME", groups: int = 1, use_bias: bool = True,
           fast: bool, in_hw: Sequence[int] | None = None, name: str,
           kernel_init: Initializer = nn.linear.default_kernel_init,
           in_features: int | None = None, dtype: Any = None,
           bf16: bool = False) -> nn.Module:
    """A 2-D conv module: ``nn.Conv`` or its fast-path twin (same ``name`` and params).

    ``fast`` selects the fast path; with it, depthwise convs (``groups == in_features``)
    use ``DepthwiseConvShifted`` and dense convs on maps with max(in_hw) <=
    ``PATCHES_MAX_SPATIAL`` use ``Conv3x3Patches``. ``bf16`` (the fast path's bf16
    precision, ``models.precision``) makes that conv's matmuls bf16 ones; with it the
    bound is ``PATCHES_MAX_SPATIAL_BF16`` and 1x1 convs are matmuls too. Everything
    else is ``nn.Conv`` computing in ``dtype`` (None: the input's).
    """
    ks = _pair(kernel_size)
    if fast:
        if groups > 1 and in_features is not None and groups == in_features:
            return DepthwiseConvShifted(features, ks, strides=strides, padding=padding,
                                        use_bias=use_bias, kernel_init=kernel_init,
                                        name=name)
        bound = PATCHES_MAX_SPATIAL_BF16 if bf16 else PATCHES_MAX_SPATIAL
        small = in_hw is not None and max(in_hw) <= bound
        if groups == 1 and (small or (bf16 and ks == (1, 1))):
            return Conv3x3Patches(features, ks, strides=strides, padding=padding,
                                  use_bias=use_bias, kernel_init=kernel_init, name=name,
                                  bf16=bf16)
    return nn.Conv(features, ks, strides=strides, padding=padding,
                   feature_group_count=groups, use_bias=use_bias,
                   kernel_init=kernel_init, name=name, dtype=dtype)
