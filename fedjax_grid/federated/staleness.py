"""Staleness weights of asynchronous buffered aggregation (FedBuff), one registry.

A delta computed from global version ``v`` that arrives when the server is at
version ``V`` has staleness ``s = V - v`` (0: trained on the newest model). It
enters the buffer multiplied by ``weight(s)`` in (0, 1]:

- ``constant``: 1 (plain FedBuff without down-weighting);
- ``polynomial(a)``: ``(1 + s) ** -a`` (FedBuff's choice is a = 0.5, Nguyen et al. 2022;
  FedAsync's polynomial, Xie et al. 2019);
- ``hinge(a, b)``: 1 for ``s <= b``, else ``1 / (a * (s - b) + 1)`` (FedAsync's hinge).

A new weighting is one registered function ``f(s: int, params) -> float`` in its own file
or here.
"""
from __future__ import annotations

from pydantic import Field

from fedjax_grid.registry import NoParams, Params, Registry

STALENESS = Registry("staleness weighting")


@STALENESS.register("constant", NoParams)
def constant(s: int, params: NoParams) -> float:
    """Every delta counts fully, however stale."""
    return 1.0


class PolynomialParams(Params):
    a: float = Field(0.5, ge=0.0, le=10.0, description="exponent: weight (1 + s)^-a")


@STALENESS.register("polynomial", PolynomialParams)
def polynomial(s: int, params: PolynomialParams) -> float:
    """(1 + s)^-a: FedBuff's down-weighting of stale deltas."""
    return float((1.0 + s) ** -params.a)


class HingeParams(Params):
    a: float = Field(10.0, ge=0.0, description="slope beyond the hinge")
    b: int = Field(4, ge=0, description="staleness up to which a delta counts fully")


@STALENESS.register("hinge", HingeParams)
def hinge(s: int, params: HingeParams) -> float:
    """1 up to staleness b, then 1 / (a (s - b) + 1)."""
    return 1.0 if s <= params.b else float(1.0 / (params.a * (s - params.b) + 1.0))


def staleness_weight(spec: dict, s: int) -> float:
    """Weight of a delta of staleness ``s >= 0`` under ``spec`` ({name, **params})."""
    entry = STALENESS.get(spec["name"])
    return entry.obj(int(s), entry.params(**{k: v for k, v in spec.items() if k != "name"}))
