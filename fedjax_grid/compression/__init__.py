"""Update and broadcast compression: pure codecs over pytrees of numpy arrays.

A codec is registered in :data:`CODECS` with its typed parameters and built from a
spec (``make_codec('topk(0.01)')``); it is a pair of pure functions::

    codec = make_codec({'name': 'int8', 'block': 256})
    state = codec.init_state(tree)                       # None when stateless
    payload, state = codec.encode(tree, rng, state)      # rng: np.random.Generator
    tree2 = decode(payload)                              # the payload names its codec
    payload_nbytes(payload)                              # bytes on the link

=========  ======================================================  ==================
codec      what is sent per floating leaf                           bytes / parameter
=========  ======================================================  ==================
none       float32 as is                                            4
bf16       bfloat16 (round to nearest even) as uint16               2
int8       stochastic rounding, float32 scale per ``block`` values  1 + 4/block
quant      the same at ``bits`` (2-8) bits, bit-packed              bits/8 + 4/block
topk       ``fraction`` of entries: int32 index + float32 value,    8 x fraction
           error feedback (``values='bf16'``: 6 x fraction)
=========  ======================================================  ==================

Payloads are plain dicts of numpy arrays, small ints, tuples and strings (layout
in :mod:`.base`): nothing beyond what Dask pickles anyway. Non-floating leaves,
floating leaves under ``raw_below`` elements (default 64) and leaves holding NaN
or inf are sent raw by every codec. The broadcast direction (a delta from the
copy a desktop holds, or the full model in bf16) is in :mod:`.broadcast`.

Where the top-k residual lives (error feedback)
-----------------------------------------------
The residual -- the part of a client's past updates not sent yet -- belongs to the
**logical client** (client id), not to a desktop: desktops come and go and a
client may be trained on any worker in any round. So the engine keeps it on the
coordinator, in its per-client state, between rounds, ships it with the client's
task (``encode(update, rng, state)`` runs on the worker) and stores the state the
task returns -- only when the update is accepted (an update rejected by
validation, dropped or timed out leaves the old residual in place: the
client's last accepted residual plus an update never sent is what that client
would otherwise lose). Consequences:

* a client that is not sampled in a round keeps its residual until it is
  sampled again (it is added to that later update);
* with dynamic or stochastic forming, the client's data changes between rounds
  but its residual carries over: it is still an unsent part of that client's
  past updates, and adding it later keeps the sum of everything it sent plus its
  residual equal to the sum of its updates;
* on resume the residuals are restored from the checkpoint with the rest of the
  per-client state (a plain tree of float32 arrays per client: ``{'residual': tree}``).

Cost: one model-sized float32 tree per client that has been sampled at least
once (``None`` until then: ``encode`` takes ``None`` as zeros), i.e.
``clients x 4 bytes x parameters`` on the coordinator (50 VGG-16 clients: 2.9 GB);
the engine may keep them on disk between rounds. A stateless codec's state is
``None`` and costs nothing.

Randomness: ``int8`` draws from the ``rng`` it is given (the same seed gives the
same payload bytes); derive it from (seed, round, client) like the fault plans.
``none``, ``bf16`` and ``topk`` are deterministic and ignore ``rng``.
"""
from fedjax_grid.compression.base import (CODECS, Codec, CodecParams, decode, flatten, make_codec,
                                          payload_nbytes, tree_nbytes_float32, unflatten)
from fedjax_grid.compression import none  # noqa: F401, I001  (the default codec first)
from fedjax_grid.compression.broadcast import (apply_broadcast, apply_delta, broadcast_payload,
                                               delta_tree)
from fedjax_grid.registry import import_submodules

import_submodules(__name__)  # every codec module registers itself: a new codec is one file


def encode(spec, tree, rng=None, state=None):
    """``make_codec(spec).encode(tree, rng, state)``: ``(payload, state)``."""
    return make_codec(spec).encode(tree, rng, state)


def init_state(spec, tree):
    """``make_codec(spec).init_state(tree)``: ``None`` for a stateless codec."""
    return make_codec(spec).init_state(tree)


__all__ = ["CODECS", "Codec", "CodecParams", "make_codec", "encode", "decode", "init_state",
           "payload_nbytes", "tree_nbytes_float32", "flatten", "unflatten",
           "broadcast_payload", "apply_broadcast", "delta_tree", "apply_delta"]
