"""What every codec shares: the registry, tree (un)flattening, raw leaves, byte counts.

A payload is a plain dict (no classes, so it unpickles anywhere numpy does)::

    {"codec": "int8", "format": 1,
     "tree": <skeleton>,            # the tree's containers with leaf numbers as leaves
     "leaves": [<leaf payload>, ...]}

``skeleton`` keeps the tree's nesting: a mapping becomes a ``dict`` (insertion order
kept; a flax ``FrozenDict`` comes back as a ``dict``), a ``list``/``tuple`` stays
one, ``None`` stays ``None`` and every array leaf becomes its position in
``leaves`` (an ``int``). Each leaf payload is a dict whose ``kind`` names the
decoder -- ``raw``, or the name of the codec that made it, whose registration carries
its ``leaf_decoder`` (``@CODECS.register(name, Params, leaf_decoder=fn)``) -- and whose
other entries are numpy arrays, small ints, tuples of ints and strings. :func:`decode`
therefore needs the payload only, not the codec's parameters, and a new codec is one
file that registers itself (this package imports every module in it).

Raw leaves (sent as they are, whatever the codec): leaves that are not floating
point (integer counters, booleans), floating leaves with fewer than ``raw_below``
elements (a codec parameter, default 64) and floating leaves holding a NaN or an
infinity (so the coordinator's update validation still sees the corruption rather
than a quantised or NaN-poisoned version of it).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from pydantic import Field

from fedjax_grid.registry import Params, Registry

PyTree = Any
Payload = dict

#: Codecs: ``CODECS.build({'name': 'topk', 'fraction': 0.01})`` -> :class:`Codec`; each
#: registration names its ``leaf_decoder`` (leaf payload -> numpy array).
CODECS = Registry("codec")

#: Version of the payload layout (``payload['format']``).
FORMAT = 1

#: Bytes counted per small int/float in a payload (its wire size in a compact format).
SCALAR_NBYTES = 8


def raw_below_field():
    """The ``raw_below`` parameter every compressing codec has (declared last, so that the
    ``'name(v)'`` shorthand sets the codec's own first parameter)."""
    return Field(64, ge=0, le=2 ** 31 - 1, description="floating leaves with fewer elements are "
                                                      "sent raw "
                                       "(tiny BatchNorm vectors and biases)")


class CodecParams(Params):
    """Parameters of a codec that has only ``raw_below``."""
    raw_below: int = raw_below_field()


@dataclasses.dataclass(frozen=True)
class Codec:
    """A codec built from its spec: pure functions over pytrees of numpy arrays.

    * ``encode(tree, rng, state) -> (payload, state)``: ``rng`` a
      ``np.random.Generator`` (used by stochastic codecs only; the same seed gives
      the same payload bytes), ``state`` what ``init_state`` or the previous
      ``encode`` returned (``None`` for a stateless codec; a stateful one also
      accepts ``None`` as "fresh").
    * ``decode(payload) -> tree``: the module-level :func:`decode` (the payload
      says which codec made it).
    * ``init_state(tree) -> state``: ``None`` when the codec is stateless.

    A codec pickles (module-level functions and its pydantic parameters), but a
    task can as well ship its ``spec`` and call :func:`make_codec` on the worker.
    """
    name: str
    params: Params
    encode: Callable[[PyTree, np.random.Generator | None, Any], tuple[Payload, Any]]
    init_state: Callable[[PyTree], Any]
    stateful: bool = False

    def decode(self, payload: Payload) -> PyTree:
        return decode(payload)

    @property
    def spec(self) -> dict:
        """``{'name': ..., **params}`` (what the records store)."""
        return {"name": self.name, **self.params.model_dump()}


def no_state(tree: PyTree) -> None:
    """``init_state`` of a stateless codec: ``None``."""


def make_codec(spec: Any = "none", path: str = "compression") -> Codec:
    """A :class:`Codec` from ``'topk'``, ``'topk(0.01)'`` or ``{'name': 'topk', 'fraction': 0.01}``.

    Bad names or parameters raise a one-line :class:`~fedjax_grid.errors.UserError`
    whose ``path`` is ``path.name`` or ``path.<param>``.
    """
    if isinstance(spec, Codec):
        return spec
    return CODECS.build(CODECS.validate(spec, path))


# ---------------------------------------------------------------------------
# Trees <-> (skeleton, leaves)

def flatten(tree: PyTree) -> tuple[Any, list[np.ndarray]]:
    """``(skeleton, leaves)``: leaves as numpy arrays, in depth-first container order."""
    leaves: list[np.ndarray] = []

    def walk(node):
        if node is None:
            return None
        if isinstance(node, Mapping):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            if type(node) not in (list, tuple):      # a NamedTuple would come back as a tuple
                raise TypeError(f"codecs take trees of mappings, lists and tuples, "
                                f"not {type(node).__name__}")
            return type(node)(walk(v) for v in node)
        leaves.append(np.asarray(node))
        return len(leaves) - 1

    return walk(tree), leaves


def unflatten(skeleton: Any, leaves: list) -> PyTree:
    """The tree of ``skeleton`` with leaf ``i`` replaced by ``leaves[i]``."""
    if skeleton is None:
        return None
    if isinstance(skeleton, dict):
        return {k: unflatten(v, leaves) for k, v in skeleton.items()}
    if isinstance(skeleton, (list, tuple)):
        return type(skeleton)(unflatten(v, leaves) for v in skeleton)
    return leaves[skeleton]


def is_float(x: np.ndarray) -> bool:
    return np.issubdtype(x.dtype, np.floating)


def send_raw(x: np.ndarray, raw_below: int) -> bool:
    """Whether leaf ``x`` goes raw (see the module doc)."""
    if not is_float(x) or x.size < raw_below or x.size == 0:
        return True
    if x.size < 4096:
        return not np.isfinite(x).all()
    with np.errstate(invalid="ignore", over="ignore"):       # inf - inf: nan, as wanted
        return not np.isfinite(np.sum(x, dtype=np.float64))


def raw_leaf(x: np.ndarray) -> dict:
    return {"kind": "raw", "data": np.asarray(x)}


def decode_raw(leaf: dict) -> np.ndarray:
    """A raw leaf's array (a fresh copy)."""
    return np.array(leaf["data"], copy=True)


def leaf_decoder(kind: str) -> Callable[[dict], np.ndarray]:
    """The decoder of leaf payloads of ``kind``: ``raw``, or the ``leaf_decoder`` the codec
    named ``kind`` registered."""
    if kind == "raw":
        return decode_raw
    decoder = CODECS.meta(kind, "leaf_decoder") if kind in CODECS else None
    if decoder is None:
        raise ValueError(f"no codec decodes leaves of kind {kind!r}; known: raw, "
                         + ", ".join(n for n in CODECS if CODECS.meta(n, "leaf_decoder")))
    return decoder


def make_payload(codec: str, skeleton: Any, leaves: list[dict]) -> Payload:
    return {"codec": codec, "format": FORMAT, "tree": skeleton, "leaves": leaves}


def decode(payload: Payload) -> PyTree:
    """The tree a payload carries (fresh numpy arrays, the original dtypes and shapes)."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"not a codec payload of format {FORMAT}: {got!r}")
    leaves = [leaf_decoder(leaf["kind"])(leaf) for leaf in payload["leaves"]]
    return unflatten(payload["tree"], leaves)


def payload_nbytes(payload: Any) -> int:
    """Bytes a payload (or any nest of dicts/lists/tuples) carries.

    Numpy arrays count their data (``nbytes``), strings and bytes their length
    (UTF-8), ints/floats/bools ``SCALAR_NBYTES`` each; the pickle framing Dask adds
    (~100 bytes per array) is not counted. For a 1 M-parameter tree the count is
    within 1 % of ``len(pickle.dumps(payload, protocol=5))``.
    """
    if isinstance(payload, np.ndarray):
        return int(payload.nbytes)
    if isinstance(payload, np.generic):
        return int(payload.nbytes)
    if isinstance(payload, (str, bytes)):
        return len(payload.encode() if isinstance(payload, str) else payload)
    if isinstance(payload, Mapping):
        return sum(payload_nbytes(k) + payload_nbytes(v) for k, v in payload.items())
    if isinstance(payload, (list, tuple)):
        return sum(payload_nbytes(v) for v in payload)
    if payload is None:
        return 0
    return SCALAR_NBYTES


def tree_nbytes_float32(tree: PyTree) -> int:
    """Bytes of ``tree`` as sent today (its arrays' ``nbytes``): the reference of ratios."""
    return sum(int(x.nbytes) for x in flatten(tree)[1])


def encode_with_feedback(codec: str, tree: PyTree, state: Any, raw_below: int,
                         encode_acc: Callable[[np.ndarray, str], tuple[dict, np.ndarray]]
                         ) -> tuple[Payload, dict]:
    """Error feedback around a lossy leaf encoder: ``(payload, {'residual': tree})``.

    Per leaf, ``acc = update + residual`` (``state`` None: zero residual) is encoded by
    ``encode_acc(acc as float32, leaf dtype) -> (leaf payload, new residual)``, the part
    of ``acc`` not sent; leaves sent raw (see :func:`send_raw`) leave a zero residual.
    """
    skeleton, leaves = flatten(tree)
    residuals = flatten(state["residual"])[1] if state is not None else [None] * len(leaves)
    if len(residuals) != len(leaves):
        raise ValueError(f"{codec} state has {len(residuals)} leaves, the update {len(leaves)}")
    out, new_res = [], []
    for x, r in zip(leaves, residuals):
        floating = is_float(x)
        acc = x if r is None or not floating else np.add(x, r, dtype=np.float32)
        if send_raw(acc, raw_below):
            out.append(raw_leaf(acc))
            new_res.append(np.zeros(x.shape, np.float32 if floating else x.dtype))
        else:
            leaf, res = encode_acc(np.asarray(acc, np.float32), x.dtype.str)
            out.append(leaf)
            new_res.append(res)
    return make_payload(codec, skeleton, out), {"residual": unflatten(skeleton, new_res)}
