"""Per-client state on the coordinator: one store, one checkpoint, for every kind.

A logical client (a local set, numbered 0..C-1) may keep state between its tasks;
desktops come and go, so that state lives on the coordinator, is shipped with the
client's task and replaced by what the task returns -- only when its update is
accepted (a rejected, late, dropped or lost update leaves the old state in place).
Each kind of state is a *slot*:

==============  ==================================================================
slot            what a client keeps there
==============  ==================================================================
``batch_stats`` ``server.bn_mode='local'``: its own BatchNorm statistics (a tree)
``codec``       an upload codec with error feedback: its codec state
                (``{'residual': tree}``, :mod:`fedjax_grid.compression`)
``algorithm``   a client algorithm with per-client state (SCAFFOLD's control
                variate, FedDyn's gradient memory: ``training.algorithm``)
``version``     ``server.broadcast='delta'``: the broadcast version it holds (an int;
                set whenever it received the model, accepted or not)
==============  ==================================================================

A client that has never been trained has no entry (``get`` returns None; codecs and
algorithms read None as "fresh"). The whole store is one group of the checkpoint's
arrays (``clients/<slot>/<client>``), restored bitwise on resume.
"""
from __future__ import annotations

from typing import Any, Optional

#: slot -> what it holds (see the module docstring)
SLOTS = {
    "batch_stats": "bn_mode='local': the client's own BatchNorm statistics",
    "codec": "upload codec with error feedback: the client's codec state",
    "algorithm": "client algorithm with per-client state: that state",
    "version": "delta broadcast: the version the client holds",
}
#: task result key -> slot it replaces when the update is accepted
ACCEPTED = {"codec_state": "codec", "algorithm_state": "algorithm"}
#: checkpoint array groups written before the store existed -> their slot
LEGACY_ARRAYS = {"client_bn": "batch_stats", "codec_state": "codec"}


class ClientStates:
    """The per-client state of a run, slot by slot (client id -> value)."""

    def __init__(self):
        self.slots: dict[str, dict[int, Any]] = {slot: {} for slot in SLOTS}

    def get(self, slot: str, client: int) -> Optional[Any]:
        """Client ``client``'s value in ``slot``; None when it has none yet."""
        return self.slots[slot].get(int(client))

    def of(self, slot: str) -> dict[int, Any]:
        """Every client's value in ``slot`` (client -> value, read-only use)."""
        return self.slots[slot]

    def put(self, slot: str, client: int, value: Any) -> None:
        self.slots[slot][int(client)] = value

    def accept(self, client: int, result: dict, keep_batch_stats: bool) -> None:
        """An accepted update of ``client``: its new states (``result``: the task's result)
        replace the old ones; ``keep_batch_stats``: bn_mode 'local' keeps its statistics."""
        if keep_batch_stats and result.get("batch_stats") is not None:
            self.put("batch_stats", client, result["batch_stats"])
        for key, slot in ACCEPTED.items():
            if result.get(key) is not None:
                self.put(slot, client, result[key])

    # -- checkpoint ------------------------------------------------------------------
    def arrays(self) -> dict:
        """The checkpoint's ``clients`` group: ``{slot: {str(client): value}}``, non-empty
        slots only, clients in order."""
        return {slot: {str(k): v for k, v in sorted(values.items())}
                for slot, values in self.slots.items() if values}

    def restore(self, arrays: dict, meta: dict) -> None:
        """Read the store back from a checkpoint's ``arrays`` (and, for checkpoints written
        before the store existed, their ``client_bn`` / ``codec_state`` groups and the
        broadcast chain's client versions in ``meta``)."""
        groups = dict(arrays.get("clients", {}))
        for old, slot in LEGACY_ARRAYS.items():
            if old in arrays:
                groups[slot] = arrays[old]
        legacy_versions = (meta.get("broadcast_chain") or {}).get("clients")
        if legacy_versions:
            groups["version"] = legacy_versions
        for slot in SLOTS:
            self.slots[slot] = {int(k): v for k, v in groups.get(slot, {}).items()}
        self.slots["version"] = {k: int(v) for k, v in self.slots["version"].items()}
