"""MobileNetV3-Small / -Large (Howard et al. 2019, Tables 1 and 2) in Flax linen.

Follows torchvision's implementation: hard-swish / ReLU per block, squeeze-excite
with hard-sigmoid and ``make_divisible(exp // 4, 8)`` squeeze channels,
``make_divisible`` channel rounding under the width multiplier, last 1x1 conv to
6x the last block's channels (576 small / 960 large), then global average pool,
Dense 1024 / 1280 + hard-swish + dropout, Dense(num_classes). BatchNorm eps 1e-3,
momentum 0.99 by default (flax convention; torch momentum 0.01; ``bn_momentum``). Convs pad (k - 1) // 2 on
both sides as torch does (not flax 'SAME', which differs at stride 2).

Input NHWC float32 (N, H, W, 3); output logits (N, num_classes).
Params at 224x224 with 1000 classes: small 2,542,856; large 5,483,032.
"""
from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from fedjax_grid.models import fast_paths
from fedjax_grid.models.precision import fast_bf16, layer_dot_general, layer_dtype

class Block(NamedTuple):
    """One inverted-residual block: channels before width scaling."""
    in_c: int
    kernel: int
    exp_c: int
    out_c: int
    se: bool
    act: str  # 'RE' (ReLU) or 'HS' (hard-swish)
    stride: int


SMALL = (
    Block(16, 3, 16, 16, True, "RE", 2),
    Block(16, 3, 72, 24, False, "RE", 2),
    Block(24, 3, 88, 24, False, "RE", 1),
    Block(24, 5, 96, 40, True, "HS", 2),
    Block(40, 5, 240, 40, True, "HS", 1),
    Block(40, 5, 240, 40, True, "HS", 1),
    Block(40, 5, 120, 48, True, "HS", 1),
    Block(48, 5, 144, 48, True, "HS", 1),
    Block(48, 5, 288, 96, True, "HS", 2),
    Block(96, 5, 576, 96, True, "HS", 1),
    Block(96, 5, 576, 96, True, "HS", 1),
)
LARGE = (
    Block(16, 3, 16, 16, False, "RE", 1),
    Block(16, 3, 64, 24, False, "RE", 2),
    Block(24, 3, 72, 24, False, "RE", 1),
    Block(24, 5, 72, 40, True, "RE", 2),
    Block(40, 5, 120, 40, True, "RE", 1),
    Block(40, 5, 120, 40, True, "RE", 1),
    Block(40, 3, 240, 80, False, "HS", 2),
    Block(80, 3, 200, 80, False, "HS", 1),
    Block(80, 3, 184, 80, False, "HS", 1),
    Block(80, 3, 184, 80, False, "HS", 1),
    Block(80, 3, 480, 112, True, "HS", 1),
    Block(112, 3, 672, 112, True, "HS", 1),
    Block(112, 5, 672, 160, True, "HS", 2),
    Block(160, 5, 960, 160, True, "HS", 1),
    Block(160, 5, 960, 160, True, "HS", 1),
)
LAST_CHANNEL = {"small": 1024, "large": 1280}

_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_dense_init = nn.initializers.normal(0.01)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision ``_make_divisible``: nearest multiple of divisor, never below 90% of v."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _act(name: str):
    return nn.relu if name == "RE" else nn.hard_swish


class MobileNetV3(nn.Module):
    """MobileNetV3 classifier. ``__call__(x, train)``: (N, H, W, 3) -> (N, num_classes).

    variant: 'small'|'large'; width_multiplier scales every channel count through
    ``make_divisible(c * width, 8)`` (including the 1024/1280 Dense, as torchvision);
    dropout_rate before the classifier; fast_path: None = auto (CPU backend) uses
    ``fast_paths.DepthwiseConvShifted`` for depthwise convs; bn_momentum: decay of the
    running statistics (flax convention, default 0.99 as torchvision's 0.01).
    ``bn_mask``: optional bool (N, 1, 1, 1) marking the rows whose batch statistics
    count in training mode. precision: 'f32' | 'bf16' compute (f32 parameters either way;
    set by the trainer from ``training.precision``, see ``models.precision``).
    """
    variant: str
    num_classes: int
    width_multiplier: float = 1.0
    dropout_rate: float = 0.2
    fast_path: bool | None = None
    bn_momentum: float = 0.99
    precision: str = "f32"

    def _bn(self, train: bool, name: str, mask=None):
        fast = fast_paths.resolve_fast_path(self.fast_path)
        bn = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                          epsilon=1e-3, dtype=layer_dtype(self.precision, fast), name=name)
        return lambda y: bn(y, mask=mask)

    def _dense(self, features: int, name: str, **kw):
        fast = fast_paths.resolve_fast_path(self.fast_path)
        return nn.Dense(features, dtype=layer_dtype(self.precision, fast),
                        dot_general=layer_dot_general(self.precision, fast), name=name, **kw)

    def _conv(self, x, features, kernel, stride, groups, fast, name):
        pad = (kernel - 1) // 2
        return fast_paths.conv2d(features, kernel, strides=stride,
                                 padding=((pad, pad), (pad, pad)), groups=groups,
                                 use_bias=False, fast=fast, in_hw=x.shape[1:3],
                                 in_features=x.shape[-1], kernel_init=_conv_init,
                                 name=name, dtype=layer_dtype(self.precision, fast),
                                 bf16=fast_bf16(self.precision, fast))(x)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, bn_mask: jax.Array | None = None) -> jax.Array:
        fast = fast_paths.resolve_fast_path(self.fast_path)
        blocks = SMALL if self.variant == "small" else LARGE
        adjust = lambda c: make_divisible(c * self.width_multiplier, 8)  # noqa: E731

        x = self._conv(x, adjust(blocks[0].in_c), 3, 2, 1, fast, "stem_conv")
        x = nn.hard_swish(self._bn(train, "stem_bn", bn_mask)(x))
        for b_idx, b in enumerate(blocks):
            in_c, exp_c, out_c = adjust(b.in_c), adjust(b.exp_c), adjust(b.out_c)
            act = _act(b.act)
            p = f"block{b_idx}_"
            y = x
            if exp_c != in_c:
                y = self._conv(y, exp_c, 1, 1, 1, fast, p + "expand_conv")
                y = act(self._bn(train, p + "expand_bn", bn_mask)(y))
            y = self._conv(y, exp_c, b.kernel, b.stride, exp_c, fast, p + "dw_conv")
            y = act(self._bn(train, p + "dw_bn", bn_mask)(y))
            if b.se:
                sq = make_divisible(exp_c // 4, 8)
                s = jnp.mean(y, axis=(1, 2), keepdims=True)
                s = nn.relu(self._dense(sq, p + "se_fc1")(s))
                s = nn.hard_sigmoid(self._dense(exp_c, p + "se_fc2")(s))
                y = y * s
            y = self._conv(y, out_c, 1, 1, 1, fast, p + "project_conv")
            y = self._bn(train, p + "project_bn", bn_mask)(y)
            x = x + y if (b.stride == 1 and in_c == out_c) else y
        last_conv = 6 * adjust(blocks[-1].out_c)
        x = self._conv(x, last_conv, 1, 1, 1, fast, "last_conv")
        x = nn.hard_swish(self._bn(train, "last_bn", bn_mask)(x))
        x = jnp.mean(x, axis=(1, 2))
        x = self._dense(adjust(LAST_CHANNEL[self.variant]), "fc", kernel_init=_dense_init)(x)
        x = nn.hard_swish(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return self._dense(self.num_classes, "classifier", kernel_init=_dense_init)(x)


# ---------------------------------------------------------------- registration

from typing import Optional  # noqa: E402

from pydantic import Field  # noqa: E402

from fedjax_grid.models import MODELS  # noqa: E402
from fedjax_grid.registry import Params  # noqa: E402


class MobileNetV3Params(Params):
    width_multiplier: float = Field(1.0, gt=0.0, le=4.0, description=(
        "scales every channel count (at most 4)"))
    dropout_rate: float = Field(0.2, ge=0.0, lt=1.0, description="dropout before the classifier")
    fast_path: Optional[bool] = Field(None, description="shifted depthwise convs (null: on the CPU backend)")
    bn_momentum: float = Field(0.99, ge=0.0, lt=1.0, description="decay of the BatchNorm running statistics")


def _register(variant: str) -> None:
    def build(num_classes: int, params: MobileNetV3Params) -> MobileNetV3:
        return MobileNetV3(variant=variant, num_classes=num_classes, **params.model_dump())
    MODELS.register(f"mobilenet_v3_{variant}", MobileNetV3Params,
                    doc=f"MobileNetV3-{variant.capitalize()} (Howard et al. 2019)")(build)


for _variant in ("large", "small"):
    _register(_variant)
