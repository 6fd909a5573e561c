"""Model registry: Flax VGG and MobileNetV3 classifiers with XLA:CPU fast paths.

``get_model(name, num_classes, **kw) -> flax.linen.Module``; ``list_models()``.
Every model is called ``model.apply(variables, x, train=bool, rngs={'dropout': k},
mutable=['batch_stats'] if train)`` with ``x`` NHWC float32; it returns logits
(N, num_classes). Variables: ``{'params'}`` plus ``{'batch_stats'}`` with BatchNorm.

Keyword arguments:
* ``vgg11 vgg13 vgg16 vgg19``: ``norm='none'|'batch'|'group'``,
  ``head='cifar'|'imagenet'``, ``width=1.0``, ``dropout_rate=None`` (0.5 imagenet
  head, 0.0 cifar head), ``fast_path=None``, ``bn_axis_name=None``, ``bn_momentum=0.9``.
* ``mobilenet_v3_small mobilenet_v3_large``: ``width_multiplier=1.0``,
  ``dropout_rate=0.2``, ``fast_path=None``, ``bn_axis_name=None``, ``bn_momentum=0.99``.

BatchNorm models also take ``bn_mask`` (bool (N, 1, 1, 1)) in ``__call__``: the rows
whose batch statistics count in training mode.
"""
from __future__ import annotations

import numbers

import flax.linen as nn

from fedjax_grid.errors import UserError
from fedjax_grid.models import fast_paths
from fedjax_grid.models.mobilenet_v3 import MobileNetV3
from fedjax_grid.models.vgg import CONFIGS, HEADS, NORMS, VGG

__all__ = ["get_model", "list_models", "VGG", "MobileNetV3", "fast_paths"]

_VGG_KW = ("norm", "head", "width", "dropout_rate", "fast_path", "bn_axis_name", "bn_momentum")
_MOBILENET_KW = ("width_multiplier", "dropout_rate", "fast_path", "bn_axis_name",
                 "bn_momentum")
_MOBILENETS = {"mobilenet_v3_small": "small", "mobilenet_v3_large": "large"}


def list_models() -> list[str]:
    """Names accepted by ``get_model``."""
    return sorted(CONFIGS) + sorted(_MOBILENETS)


def _check_kw(name: str, kw: dict, allowed: tuple[str, ...]) -> None:
    for k in kw:
        if k not in allowed:
            raise UserError(f"unknown option {k!r} for model {name!r}; "
                            f"allowed: {', '.join(allowed)}")


def _check_choice(key: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"{key}={value!r} is not allowed; use one of {', '.join(choices)}")


def _check_positive(key: str, value) -> None:
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not value > 0 or value != value):
        raise UserError(f"{key}={value!r} is not allowed; use a number > 0")


def _check_rate(key: str, value) -> None:
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not 0.0 <= value < 1.0):
        raise UserError(f"{key}={value!r} is not allowed; use a number in [0, 1)")


def get_model(name: str, num_classes: int, **kw) -> nn.Module:
    """Build the named classifier for ``num_classes`` classes (see module doc for kw).

    Raises ``UserError`` for an unknown name, unknown option or bad option value.
    """
    if name not in list_models():
        raise UserError(f"unknown model {name!r}; allowed: {', '.join(list_models())}")
    if (not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool)
            or num_classes < 1):
        raise UserError(f"num_classes={num_classes!r} is not allowed; use an integer >= 1")
    if "fast_path" in kw and kw["fast_path"] not in (None, True, False):
        raise UserError(f"fast_path={kw['fast_path']!r} is not allowed; "
                        "use None, True or False")
    if "bn_momentum" in kw:
        _check_rate("bn_momentum", kw["bn_momentum"])
    if name in CONFIGS:
        _check_kw(name, kw, _VGG_KW)
        _check_choice("norm", kw.get("norm", "none"), NORMS)
        _check_choice("head", kw.get("head", "cifar"), HEADS)
        _check_positive("width", kw.get("width", 1.0))
        if kw.get("dropout_rate") is not None:
            _check_rate("dropout_rate", kw["dropout_rate"])
        return VGG(config=name, num_classes=int(num_classes), **kw)
    _check_kw(name, kw, _MOBILENET_KW)
    _check_positive("width_multiplier", kw.get("width_multiplier", 1.0))
    _check_rate("dropout_rate", kw.get("dropout_rate", 0.2))
    return MobileNetV3(variant=_MOBILENETS[name], num_classes=int(num_classes), **kw)
