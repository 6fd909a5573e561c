"""VGG-11/13/16/19 (Simonyan & Zisserman configs A/B/D/E) in Flax linen.

Input NHWC float32 (N, H, W, 3); output logits (N, num_classes).

Heads:
* ``'cifar'``: conv stack, global average pool (on 32x32 input the feature map is
  1x1x512, so this is the flatten), optional dropout, Dense(num_classes).
  VGG-16, no norm, 10 classes: 14,719,818 params.
* ``'imagenet'``: conv stack, adaptive 7x7 average pool (as torch's
  ``AdaptiveAvgPool2d``), Dense 4096 + ReLU + dropout, Dense 4096 + ReLU + dropout,
  Dense(num_classes). VGG-16, 1000 classes: 138,357,544 params
  (138,365,992 with ``norm='batch'``, counting BN scale/bias only).

Every conv keeps its bias (as torchvision does, also with BatchNorm).
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fedjax_grid.models import fast_paths
from fedjax_grid.models.precision import fast_bf16, layer_dot_general, layer_dtype

#: Channel plan per config; 'M' is a 2x2/2 max pool.
CONFIGS: dict[str, tuple] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512,
              "M", 512, 512, 512, 512, "M"),
}

_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # kaiming, torchvision
_dense_init = nn.initializers.normal(0.01)


def scaled_channels(c: int, width: float) -> int:
    """Channels after the width multiplier: max(1, round(c * width))."""
    return max(1, int(round(c * width)))


def adaptive_avg_pool(x: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    """torch ``AdaptiveAvgPool2d`` on NHWC: bin i spans [floor(i*H/o), ceil((i+1)*H/o))."""
    def matrix(n_in: int, n_out: int) -> np.ndarray:
        m = np.zeros((n_out, n_in), np.float32)
        for i in range(n_out):
            lo, hi = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
            m[i, lo:hi] = 1.0 / (hi - lo)
        return m
    ph, pw = matrix(x.shape[1], out_hw[0]), matrix(x.shape[2], out_hw[1])
    if ph.shape[0] == ph.shape[1] and pw.shape[0] == pw.shape[1]:
        return x
    return jnp.einsum("ih,jw,nhwc->nijc", ph, pw, x)


def _group_count(channels: int, max_groups: int = 32) -> int:
    return math.gcd(channels, max_groups)


class VGG(nn.Module):
    """VGG classifier. ``__call__(x, train)``: x (N, H, W, 3) float -> (N, num_classes).

    config: one of ``CONFIGS``; norm: 'none'|'batch'|'group'; head: 'cifar'|'imagenet';
    width: channel multiplier (also for the 4096 Dense layers of the imagenet head);
    dropout_rate: None -> 0.5 for the imagenet head, 0.0 for the cifar head;
    fast_path: None = auto (CPU backend), see ``fast_paths``; bn_momentum: decay of the
    BatchNorm running statistics (flax convention: new = m * old + (1 - m) * batch).
    ``bn_mask``: optional bool (N, 1, 1, 1) marking the rows whose batch statistics
    count in training mode (padded rows excluded; see ``training.bn_stats``).
    precision: 'f32' | 'bf16' compute (f32 parameters either way; set by the trainer from
    ``training.precision``, see ``models.precision``).
    """
    config: str
    num_classes: int
    norm: str = "none"
    head: str = "cifar"
    width: float = 1.0
    dropout_rate: float | None = None
    fast_path: bool | None = None
    bn_momentum: float = 0.9
    precision: str = "f32"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, bn_mask: jax.Array | None = None) -> jax.Array:
        fast = fast_paths.resolve_fast_path(self.fast_path)
        dtype, dot = layer_dtype(self.precision, fast), layer_dot_general(self.precision, fast)
        i = 0
        for v in CONFIGS[self.config]:
            if v == "M":
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
                continue
            c = scaled_channels(v, self.width)
            x = fast_paths.conv2d(c, 3, padding=((1, 1), (1, 1)), fast=fast,
                                  in_hw=x.shape[1:3], name=f"conv{i}",
                                  kernel_init=_conv_init, dtype=dtype,
                                  bf16=fast_bf16(self.precision, fast))(x)
            if self.norm == "batch":
                x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                 epsilon=1e-5, dtype=dtype, name=f"bn{i}")(x, mask=bn_mask)
            elif self.norm == "group":
                x = nn.GroupNorm(num_groups=_group_count(c), epsilon=1e-5, dtype=dtype,
                                 name=f"gn{i}")(x)
            x = nn.relu(x)
            i += 1
        if self.head == "cifar":
            rate = 0.0 if self.dropout_rate is None else self.dropout_rate
            x = jnp.mean(x, axis=(1, 2))
            if rate > 0:
                x = nn.Dropout(rate, deterministic=not train)(x)
            return nn.Dense(self.num_classes, kernel_init=_dense_init, dtype=dtype,
                            dot_general=dot, name="classifier")(x)
        rate = 0.5 if self.dropout_rate is None else self.dropout_rate
        x = adaptive_avg_pool(x, (7, 7))
        x = x.reshape(x.shape[0], -1)
        hidden = scaled_channels(4096, self.width)
        for k in range(2):
            x = nn.Dense(hidden, kernel_init=_dense_init, dtype=dtype, dot_general=dot,
                         name=f"fc{k}")(x)
            x = nn.relu(x)
            x = nn.Dropout(rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, kernel_init=_dense_init, dtype=dtype, dot_general=dot,
                        name="classifier")(x)


# ---------------------------------------------------------------- registration

from typing import Literal, Optional  # noqa: E402

from pydantic import Field  # noqa: E402

from fedjax_grid.models import MODELS  # noqa: E402
from fedjax_grid.registry import Params  # noqa: E402


class VGGParams(Params):
    norm: Literal["none", "batch", "group"] = Field("none", description="normalisation after each conv")
    head: Literal["cifar", "imagenet"] = Field(
        "cifar", description="cifar: global pool + Dense; imagenet: 7x7 pool + 2 x Dense 4096")
    width: float = Field(1.0, gt=0.0, le=4.0, description=(
        "channel multiplier (at most 4: 16x the parameters; beyond, a desktop's memory)"))
    dropout_rate: Optional[float] = Field(None, ge=0.0, lt=1.0, description=(
        "dropout before the classifier (null: 0.5 imagenet head, 0 cifar head)"))
    fast_path: Optional[bool] = Field(None, description="XLA:CPU fast convolutions (null: on CPU)")
    bn_momentum: float = Field(0.9, ge=0.0, lt=1.0, description="decay of the BatchNorm running statistics")


def _register(config: str) -> None:
    def build(num_classes: int, params: VGGParams) -> VGG:
        return VGG(config=config, num_classes=num_classes, **params.model_dump())
    MODELS.register(config, VGGParams, doc=f"VGG-{config[3:]} (Simonyan & Zisserman), "
                                           "CIFAR or ImageNet head")(build)


for _config in CONFIGS:
    _register(_config)
