"""The broadcast as a chain of compressed deltas from one shared reference (``server.broadcast='delta'``).

The coordinator keeps one **reference** ``R_v``: the model every up-to-date
desktop holds. For each new global version ``v`` it sends only the step::

    m_v = encode(W_v - R_u)          # u: the previous version of the chain
    R_v = R_u + decode(m_v)          # what a desktop holding R_u reconstructs, bit for bit

so a desktop that holds ``R_u`` downloads ``m_v`` (e.g. 3 bits a parameter with
``quant(3)``) instead of the model. The delta is taken from the *reconstruction*,
not from the exact previous model: one step's coding error is part of the next
step's delta and never accumulates (closed loop, error feedback in the broadcast
direction without per-client state). Clients train from ``R_v`` and return their
delta against it; the server folds deltas into its exact parameters, so the
coding error of the broadcast costs the clients' start point only.

Who holds what:

* a desktop that last trained from version ``u`` (``u`` still in the chain)
  applies the steps after ``u`` in order; its download is the sum of those steps'
  bytes (:meth:`BroadcastChain.download_nbytes`);
* a desktop that holds nothing, or a version older than the chain keeps, gets the
  **full** reference ``R_v`` in float32 (its download: 4 bytes a parameter). The
  chain keeps old steps only while their total is under the full model's bytes.

Memory on the coordinator: one reference (a model) plus the kept steps (under one
model's bytes), whatever the number of clients. Per client: the version it holds
(an int). A Dask worker (where several simulated desktops may run) caches one
reference per run (:func:`apply_chain` on its ``(version, tree)``); the payload
scattered to the workers carries the steps from the oldest version any of them
holds and, when one of them holds nothing known, the full reference.

Deterministic: step ``v`` is encoded with the ``rng`` given for ``v`` (the engine
seeds it from (seed, v)), and reconstruction is the same numpy code everywhere.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from fedjax_grid.compression.base import Codec, decode, flatten, make_codec, payload_nbytes, unflatten
from fedjax_grid.compression.broadcast import apply_broadcast, broadcast_payload
from fedjax_grid.compression.none import encode as encode_raw
from fedjax_grid.failures import StaleCopy

PyTree = Any


def _copy(tree: PyTree) -> PyTree:
    """``tree`` as numpy arrays of its own (the caller's arrays may change later)."""
    skeleton, leaves = flatten(tree)
    return unflatten(skeleton, [np.array(x, copy=True) for x in leaves])


def full_payload(tree: PyTree) -> dict:
    """The reference as it is (the ``none`` codec's payload: float32 stays float32)."""
    return encode_raw(tree)[0]


class BroadcastChain:
    """The coordinator's side: reference, kept steps, bytes per holder.

    codec: a :class:`Codec` or spec for the steps. ``versions``: the chain's versions,
    oldest first; ``steps[v]`` is the payload that takes ``versions[i-1]`` to ``v``.
    """

    def __init__(self, codec: Codec | Any):
        self.codec = make_codec(codec)
        self.reference: Optional[PyTree] = None
        self.versions: list[int] = []
        self.steps: dict[int, dict] = {}
        self.step_nbytes: dict[int, int] = {}
        self.full_nbytes = 0

    @property
    def version(self) -> Optional[int]:
        """The newest version (None before the first ``advance``)."""
        return self.versions[-1] if self.versions else None

    def advance(self, new_global: PyTree, version: int, rng: np.random.Generator) -> None:
        """Make ``version`` (the global model ``new_global``) the chain's newest version;
        a no-op when it already is."""
        version = int(version)
        if self.version == version:
            return
        if self.reference is None:
            self.reference = _copy(new_global)
            self.full_nbytes = payload_nbytes(full_payload(self.reference))
        else:   # the delta from the reference, as compression.broadcast sends it
            step, self.reference = broadcast_payload(new_global, self.reference, self.codec, rng,
                                                     version=version, base_version=self.version)
            self.steps[version] = step
            self.step_nbytes[version] = payload_nbytes(step)
        self.versions.append(version)
        self._prune()

    def _prune(self) -> None:
        """Keep the newest steps whose total is at most the full model's bytes."""
        total, keep_from = 0, len(self.versions) - 1
        for i in range(len(self.versions) - 1, 0, -1):
            total += self.step_nbytes[self.versions[i]]
            if total > self.full_nbytes:
                break
            keep_from = i - 1
        for v in self.versions[:keep_from]:
            self.steps.pop(v, None)
            self.step_nbytes.pop(v, None)
        self.versions = self.versions[keep_from:]
        # versions[0] is now a base only: its own step (if any) is no longer needed
        if self.versions:
            self.steps.pop(self.versions[0], None)
            self.step_nbytes.pop(self.versions[0], None)

    def download_nbytes(self, held: Optional[int]) -> int:
        """Bytes a desktop holding version ``held`` (None: nothing) downloads."""
        if held is not None and held == self.version:
            return 0
        if held is None or held not in self.versions:
            return self.full_nbytes
        i = self.versions.index(held)
        return sum(self.step_nbytes[v] for v in self.versions[i + 1:])

    def payload(self, held: list, run: str = "") -> dict:
        """What to scatter to workers holding the versions ``held`` (None: unknown)."""
        known = [h for h in held if h is not None and h in self.versions]
        start = min(known) if known else self.version
        i = self.versions.index(start)
        steps = [(v, self.steps[v]) for v in self.versions[i + 1:]]
        need_full = not held or len(known) < len(held)
        return {"broadcast": "chain", "run": run, "version": self.version, "base": start,
                "steps": steps, "full": full_payload(self.reference) if need_full else None}

    # -- checkpoint ------------------------------------------------------------------
    def state(self) -> dict:
        """The reference and its version (the steps are not kept: after a resume every
        desktop is sent the full reference once)."""
        return {"version": self.version, "reference": self.reference}

    def restore(self, state: dict) -> None:
        self.reference = state.get("reference")
        self.versions = [] if state.get("version") is None else [int(state["version"])]
        self.steps, self.step_nbytes = {}, {}
        self.full_nbytes = 0 if self.reference is None else \
            payload_nbytes(full_payload(self.reference))


def apply_chain(payload: dict, held: Optional[dict]) -> tuple[int, PyTree]:
    """The worker's side: ``(version, model)`` from a chain payload and the copies this
    desktop holds (``{version: model}``, or None). The newest held version the payload's
    steps start from is used. Raises :class:`StaleCopy` when the payload has neither the
    steps from a held version nor the full reference."""
    v = payload["version"]
    held = held or {}
    if v in held:
        return v, held[v]
    steps = payload["steps"]
    bases = [payload["base"]] + [u for u, _ in steps]
    usable = [u for u in bases[:-1] if u in held]
    if usable:
        u = max(usable)
        model = held[u]
        for step_base, (_, step) in zip(bases[bases.index(u):], steps[bases.index(u):]):
            model = apply_broadcast(step, model, held_version=step_base)
        return v, model
    if payload.get("full") is not None:
        return v, decode(payload["full"])
    raise StaleCopy(f"this desktop holds versions {sorted(held)}; the broadcast of version "
                    f"{v} carries steps from version {payload['base']} and no full model")
