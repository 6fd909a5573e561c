"""Local-training hyper-parameters and the optimizer they describe.

``HParams`` is a frozen (hashable) dataclass validated on construction.
``make_optimizer(hp)`` builds an optax transformation whose numeric
hyper-parameters (learning rate, momentum, weight decay, clip norm) live in the
optimizer *state* (``optax.inject_hyperparams``), so one compiled train step
serves every learning rate of a sweep: only the optimizer name and whether
clipping is on change the compiled program.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import optax

from fedjax_grid.errors import UserError
from fedjax_grid.models.precision import PRECISIONS, check_precision  # noqa: F401 (re-exported)

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")


@dataclasses.dataclass(frozen=True)
class HParams:
    """Hyper-parameters of one client's local training.

    optimizer: 'sgd' | 'momentum' | 'adam' | 'adamw'.
    learning_rate: step size (> 0).
    momentum: heavy-ball momentum for 'momentum' (in [0, 1)); ignored otherwise.
    weight_decay: >= 0; L2 penalty added to the gradient for sgd/momentum/adam,
        decoupled decay for adamw.
    batch_size: examples per step (>= 1; divisible by the number of devices).
    epochs: local epochs E (>= 1).
    prox_mu: FedProx coefficient mu >= 0; adds mu/2 * ||w - w_anchor||^2 over params.
    augment: random crop (with padding H//8) and horizontal flip on training batches.
    grad_clip: clip gradients to this global L2 norm (> 0), or None.
    precision: 'f32' | 'bf16' compute of the train step (``models.precision``: bf16
        operands with float32 accumulation; parameters, optimizer state, the loss and
        BatchNorm statistics stay float32).
    """
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: int = 1
    prox_mu: float = 0.0
    augment: bool = False
    grad_clip: Optional[float] = None
    precision: str = "f32"

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        _check_number("learning_rate", self.learning_rate, low=0.0, low_open=True)
        _check_number("momentum", self.momentum, low=0.0, high=1.0)
        _check_number("weight_decay", self.weight_decay, low=0.0)
        _check_number("prox_mu", self.prox_mu, low=0.0)
        _check_int("batch_size", self.batch_size)
        _check_int("epochs", self.epochs)
        if not isinstance(self.augment, bool):
            raise UserError(f"augment must be true or false, got {self.augment!r}")
        if self.grad_clip is not None:
            _check_number("grad_clip", self.grad_clip, low=0.0, low_open=True)
        check_precision(self.precision)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_number(name, value, *, low=None, high=None, low_open=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high
    if not ok:
        rng = ("(" if low_open else "[") + f"{low}, " + (f"{high})" if high is not None else "inf)")
        raise UserError(f"{name} must be a number in {rng}, got {value!r}")


def _check_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be an integer >= 1, got {value!r}")


def optimizer_factory(name: str, clip: bool) -> Callable[..., optax.GradientTransformation]:
    """``factory(learning_rate, momentum, weight_decay[, grad_clip])`` for ``name``.

    The returned factory takes only numeric arguments, so it can be wrapped by
    ``optax.inject_hyperparams``.
    """
    if name not in OPTIMIZERS:
        raise UserError(f"optimizer {name!r} is not one of {', '.join(OPTIMIZERS)}")

    def factory(learning_rate, momentum, weight_decay, grad_clip=None):
        parts = []
        if clip:
            parts.append(optax.clip_by_global_norm(grad_clip))
        if name == "adamw":
            parts.append(optax.adamw(learning_rate, weight_decay=weight_decay))
        else:
            parts.append(optax.add_decayed_weights(weight_decay))
            if name == "sgd":
                parts.append(optax.sgd(learning_rate))
            elif name == "momentum":
                parts.append(optax.sgd(learning_rate, momentum=momentum))
            else:
                parts.append(optax.adam(learning_rate))
        return optax.chain(*parts)

    return factory


def make_optimizer(hp: HParams) -> optax.GradientTransformation:
    """The optax transformation for ``hp`` (hyper-parameters injected into its state)."""
    clip = hp.grad_clip is not None
    kw = dict(learning_rate=hp.learning_rate, momentum=hp.momentum,
              weight_decay=hp.weight_decay)
    if clip:
        kw["grad_clip"] = hp.grad_clip
    return optax.inject_hyperparams(optimizer_factory(hp.optimizer, clip))(**kw)
