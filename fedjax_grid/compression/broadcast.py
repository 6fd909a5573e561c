"""The broadcast direction: the global model to a desktop, as a delta from what it holds.

The engine sends the full model with ``broadcast_payload(gvars, None, ...)``
(``server.broadcast=full``), and with ``server.broadcast=delta`` each step of
:class:`~fedjax_grid.compression.chain.BroadcastChain` is one ``broadcast_payload``
from the chain's shared reference, applied on the worker by ``apply_broadcast``.

Coordinator::

    payload, holds = broadcast_payload(new_global, held, codec, rng,
                                       version=v, base_version=held_v)
    # ship payload; remember that this desktop now holds `holds` (version v)

Worker::

    variables = apply_broadcast(payload, held, held_version=held_v)   # == holds, bit for bit

* ``held is None`` (a desktop that joins, or lost its copy): the **full** model is
  sent with ``full`` (default ``'bf16'``: 2 bytes per parameter).
* otherwise the **delta** ``new_global - held`` is encoded with ``codec`` (any
  codec; a stateful one starts from a fresh state each time, see below).

``held`` must be what the desktop really holds -- the *reconstruction* returned by
the previous ``broadcast_payload`` -- not the exact global model of that
version. The delta is then taken from the desktop's own lossy copy, so the error
of one broadcast is part of the next delta and never accumulates: the copy
tracks the global model within one codec error (closed loop; for ``topk`` this is
exactly error feedback, with the residual ``new_global - holds`` kept implicitly
by the coordinator, so no codec state is needed in this direction).
``apply_broadcast`` and the coordinator's reconstruction run the same numpy code,
so they agree bit for bit.

Deterministic for a seed: the same ``rng`` seed gives the same payload bytes, so
desktops holding the same version get the same bytes and the coordinator can
encode each (base version -> version) pair once per round and keep one
reconstruction per version some desktop still holds (not one per desktop).

Leaves: floating leaves are added (``holds = held + decode(delta)``, float32);
other leaves (integer counters, flags) are replaced by their new value, which
every codec sends raw.

Uploads use the same helpers: the client encodes ``delta_tree(trained, start)``
where ``start`` is the model it trained from (``holds``), and the coordinator
decodes it with :func:`~fedjax_grid.compression.decode`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fedjax_grid.compression.base import Codec, decode, flatten, make_codec, unflatten

PyTree = Any


def _floating(x: np.ndarray) -> bool:
    return np.issubdtype(x.dtype, np.floating)


def delta_tree(new: PyTree, old: PyTree) -> PyTree:
    """Leaf-wise ``new - old`` for floating leaves (in ``new``'s dtype); ``new`` itself otherwise."""
    skeleton, a = flatten(new)
    _, b = flatten(old)
    if len(a) != len(b):
        raise ValueError(f"trees differ: {len(a)} vs {len(b)} leaves")
    out = [np.subtract(x, y, dtype=x.dtype) if _floating(x) else x for x, y in zip(a, b)]
    return unflatten(skeleton, out)


def apply_delta(base: PyTree, delta: PyTree) -> PyTree:
    """Leaf-wise ``base + delta`` for floating leaves (in ``base``'s dtype); ``delta`` otherwise."""
    skeleton, a = flatten(base)
    _, d = flatten(delta)
    if len(a) != len(d):
        raise ValueError(f"trees differ: {len(a)} vs {len(d)} leaves")
    out = [np.add(x, y, dtype=x.dtype) if _floating(x) else np.array(y) for x, y in zip(a, d)]
    return unflatten(skeleton, out)


def broadcast_payload(new_global: PyTree, held: PyTree | None, codec: Codec | Any,
                      rng: np.random.Generator | None, *, full: Codec | Any = "bf16",
                      version: int | None = None, base_version: int | None = None
                      ) -> tuple[dict, PyTree]:
    """``(payload, holds)``: what to send a desktop that holds ``held``, and what it holds after.

    ``codec``/``full``: a :class:`Codec` or a spec (``'topk(0.01)'``, a dict).
    ``version``/``base_version``: optional tags written into the payload; the
    worker checks ``base_version`` against the version it holds.
    """
    if held is None:
        body, _ = make_codec(full).encode(new_global, rng, None)
        holds = decode(body)
        kind = "full"
        base_version = None
    else:
        codec = make_codec(codec)
        body, _ = codec.encode(delta_tree(new_global, held), rng, None)
        holds = apply_delta(held, decode(body))
        kind = "delta"
    payload = {"broadcast": kind, "version": version, "base_version": base_version, "body": body}
    return payload, holds


def apply_broadcast(payload: dict, held: PyTree | None, held_version: int | None = None) -> PyTree:
    """The worker side: the model a broadcast payload gives, from the copy ``held`` (or none)."""
    kind = payload.get("broadcast")
    if kind == "full":
        return decode(payload["body"])
    if kind != "delta":
        raise ValueError(f"not a broadcast payload: broadcast={kind!r}")
    if held is None:
        raise ValueError(f"a delta from version {payload.get('base_version')} needs the model "
                         "this desktop holds, and it holds none")
    base = payload.get("base_version")
    if base is not None and held_version is not None and base != held_version:
        raise ValueError(f"a delta from version {base} cannot apply to version {held_version}")
    return apply_delta(held, decode(payload["body"]))
