"""``none``: every leaf sent as it is (float32 stays float32): the reference."""
from __future__ import annotations

from fedjax_grid.compression.base import CODECS, Codec, flatten, make_payload, no_state, raw_leaf
from fedjax_grid.registry import NoParams


def encode(tree, rng=None, state=None):
    """Every leaf raw; ``rng`` and ``state`` are unused (the state stays ``None``)."""
    skeleton, leaves = flatten(tree)
    return make_payload("none", skeleton, [raw_leaf(x) for x in leaves]), None


@CODECS.register("none", NoParams)
def none(params: NoParams) -> Codec:
    """Leaves as they are (float32: 4 bytes per parameter)."""
    return Codec("none", params, encode, init_state=no_state)
