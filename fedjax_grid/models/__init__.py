"""Model registry: Flax VGG and MobileNetV3 classifiers with XLA:CPU fast paths.

``get_model(name, num_classes, **kw) -> flax.linen.Module``; ``list_models()``.
Every model is called ``model.apply(variables, x, train=bool, rngs={'dropout': k},
mutable=['batch_stats'] if train)`` with ``x`` NHWC float32; it returns logits
(N, num_classes). Variables: ``{'params'}`` plus ``{'batch_stats'}`` with BatchNorm.

Models are registered in ``MODELS`` (a :class:`~fedjax_grid.registry.Registry`)
with their typed constructor parameters (``MODELS.schema(name)``):

* ``vgg11 vgg13 vgg16 vgg19``: ``norm='none'|'batch'|'group'``,
  ``head='cifar'|'imagenet'``, ``width=1.0``, ``dropout_rate=None`` (0.5 imagenet
  head, 0.0 cifar head), ``fast_path=None``, ``bn_momentum=0.9``.
* ``mobilenet_v3_small mobilenet_v3_large``: ``width_multiplier=1.0``,
  ``dropout_rate=0.2``, ``fast_path=None``, ``bn_momentum=0.99``.

A new model is one file in this package that registers a builder
``fn(num_classes, params) -> nn.Module`` with ``@MODELS.register(name, Params)``;
every module here is imported below, so it registers itself.

BatchNorm models also take ``bn_mask`` (bool (N, 1, 1, 1)) in ``__call__``: the rows
whose batch statistics count in training mode.
"""
from __future__ import annotations

import functools
import numbers

import flax.linen as nn

from fedjax_grid.errors import UserError
from fedjax_grid.registry import Registry, import_submodules

#: Models by name: ``builder(num_classes, params) -> flax.linen.Module``.
MODELS = Registry("model")

from fedjax_grid.models import fast_paths  # noqa: E402  (modules register into MODELS)
from fedjax_grid.models.vgg import VGG  # noqa: E402
from fedjax_grid.models.mobilenet_v3 import MobileNetV3  # noqa: E402

import_submodules(__name__)

__all__ = ["MODELS", "cached_model", "get_model", "list_models", "VGG", "MobileNetV3", "fast_paths"]


def list_models() -> list[str]:
    """Names accepted by ``get_model`` (the registered models)."""
    return list(MODELS)


def get_model(name: str, num_classes: int, **kw) -> nn.Module:
    """Build the named classifier for ``num_classes`` classes (see module doc for kw).

    Raises ``UserError`` for an unknown name, unknown option or bad option value.
    """
    MODELS.get(name)
    if (not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool)
            or num_classes < 1):
        raise UserError(f"num_classes={num_classes!r} is not allowed; use an integer >= 1")
    return MODELS.build({"name": name, **kw}, int(num_classes))


@functools.lru_cache(maxsize=16)
def cached_model(name: str, num_classes: int, kwargs: tuple) -> nn.Module:
    """The module of a model key ``(name, num_classes, sorted kwargs items)``, built once per
    process (the coordinator and every worker: jitted steps stay compiled between tasks)."""
    return get_model(name, num_classes, **dict(kwargs))
