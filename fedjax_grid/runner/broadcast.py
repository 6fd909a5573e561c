"""What the workers receive each round: the global variables, a codec payload, or a chain step.

``Broadcast.value(gvars, index)`` is what a round (or an asynchronous version) scatters
to the workers:

- ``server.broadcast_codec: none``: the global variables as they are;
- another codec: their full-model payload (rng seeded from (seed, broadcast stream,
  index)); clients train from -- and take their delta against -- the decoded weights
  they received, the server folds each delta into its exact parameters (a lossy
  broadcast costs the clients' start point, it does not accumulate in the global model);
- ``server.broadcast='delta'``: the chain (:mod:`fedjax_grid.compression.chain`) advances
  to version ``index`` and the value is a function of the receiving workers: the steps
  from the oldest version they hold, plus the full reference when one of them holds
  nothing known.

Who holds which version: each worker (``worker_versions``, forgotten when one of its
tasks fails: its copy is unknown then) and each logical client (the ``version`` slot
of the run's :class:`~fedjax_grid.runner.clients.ClientStates`). The chain's reference
and version are checkpointed; the workers' copies are not (after a resume every
worker gets the full reference once).
"""
from __future__ import annotations

from typing import Optional

from fedjax_grid import streams
from fedjax_grid.grid.tasks import ordered_like
from fedjax_grid.runner.clients import ClientStates


class Broadcast:
    """The run's broadcast: codec, delta chain, and who holds which version."""

    def __init__(self, config, run_id: str, clients: ClientStates):
        self.config, self.run_id, self.clients = config, run_id, clients
        self.chain = None
        self.worker_versions: dict[str, int] = {}

    def value(self, gvars: dict, index: int):
        """What is scattered for global version ``index`` (see the module docstring)."""
        codec = self.config.server.broadcast_codec
        rng = streams.rng(self.config.seed, streams.BROADCAST_CODEC, index)
        if self.config.server.broadcast == "delta":
            from fedjax_grid.compression.chain import BroadcastChain
            if self.chain is None:
                self.chain = BroadcastChain(codec.model_dump())
            self.chain.advance(gvars, int(index), rng)
            return self.chain_payload
        if codec.name == "none":
            return gvars
        from fedjax_grid.compression import broadcast_payload
        payload, _ = broadcast_payload(gvars, None, codec, rng, full=codec.model_dump(),
                                       version=int(index))
        return payload

    def chain_payload(self, workers: list) -> dict:
        """The chain payload for ``workers`` (addresses), from the versions they hold."""
        return self.chain.payload([self.worker_versions.get(w) for w in workers], run=self.run_id)

    def download_nbytes(self, client: int) -> Optional[int]:
        """Bytes client ``client`` downloads (the chain's steps from the version it holds);
        None without the delta broadcast (the whole broadcast value)."""
        if self.chain is None:
            return None
        return self.chain.download_nbytes(self.clients.get("version", client))

    def note_held(self, client: int, result: dict) -> None:
        """The worker that ran client ``client``'s task and the client now hold the
        version it trained from (``result['held_version']``; None: no chain)."""
        v = result.get("held_version")
        if v is not None:
            self.worker_versions[result["worker"]] = int(v)
            self.clients.put("version", client, int(v))

    def forget_worker(self, address: str) -> None:
        """``address``'s cached copy is unknown now (a task there failed): full next time."""
        self.worker_versions.pop(address, None)

    # -- checkpoint ------------------------------------------------------------------
    def checkpoint(self, arrays: dict, meta: dict) -> None:
        """Add the chain's reference and version to a checkpoint's ``arrays`` / ``meta``."""
        if self.chain is not None and self.chain.reference is not None:
            arrays["broadcast_reference"] = self.chain.reference
            meta["broadcast_chain"] = {"version": self.chain.version}

    def restore(self, arrays: dict, meta: dict, like: dict) -> None:
        """The chain of a checkpoint (``like``: the global variables, for key order)."""
        chain = meta.get("broadcast_chain")
        if chain is None or "broadcast_reference" not in arrays:
            return
        from fedjax_grid.compression.chain import BroadcastChain
        self.chain = BroadcastChain(self.config.server.broadcast_codec.model_dump())
        self.chain.restore({"version": chain["version"],
                            "reference": ordered_like(like, arrays["broadcast_reference"])})
