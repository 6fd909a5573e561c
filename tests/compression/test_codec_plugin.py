"""A codec is one file: its registration carries its leaf decoder, and the package
imports every codec module (no list, no decoder table elsewhere)."""
import functools
import pathlib

import numpy as np
import pytest

import fedjax_grid.compression as compression
from fedjax_grid.compression.base import (CODECS, Codec, CodecParams, decode, flatten,
                                          make_codec, make_payload, no_state)


def _encode(tree, rng=None, state=None, *, params):
    skeleton, leaves = flatten(tree)
    out = [{"kind": "halves", "data": (np.asarray(x, np.float32) / 2).astype(np.float16),
            "dtype": np.asarray(x).dtype.str} for x in leaves]
    return make_payload("halves", skeleton, out), None


def _decode_leaf(leaf):
    return (leaf["data"].astype(np.float32) * 2).astype(np.dtype(leaf["dtype"]))


@pytest.fixture
def halves():
    @CODECS.register("halves", CodecParams, leaf_decoder=_decode_leaf)
    def build(params):
        """float16 of half the value (a test codec)."""
        return Codec("halves", params, functools.partial(_encode, params=params), init_state=no_state)
    yield build
    CODECS.unregister("halves")


def test_a_registered_codec_encodes_and_decodes(halves):
    tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}
    payload, _ = make_codec("halves").encode(tree, None, None)
    back = decode(payload)
    for k in tree:
        np.testing.assert_array_equal(back[k], tree[k])


def test_an_unknown_leaf_kind_is_refused_in_one_line():
    bad = make_payload("mystery", 0, [{"kind": "mystery"}])
    with pytest.raises(ValueError, match="no codec decodes leaves of kind 'mystery'; known: raw, "):
        decode(bad)


def test_every_codec_module_is_registered_without_a_list():
    package = pathlib.Path(compression.__file__).parent
    init = (package / "__init__.py").read_text()
    assert "import_submodules(__name__)" in init
    for name in ("bf16", "int8", "quant", "topk"):
        assert name in CODECS and CODECS.meta(name, "leaf_decoder") is not None
        assert f"import none, {name}" not in init and f", {name}," not in init
