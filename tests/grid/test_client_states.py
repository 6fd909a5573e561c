"""The per-client state store: one checkpoint group, restored bitwise; checkpoints written
before the store existed (client_bn / codec_state groups, chain versions in the meta) read
back into the same slots."""
import numpy as np

from fedjax_grid.grid.checkpoint import load_checkpoint, save_checkpoint
from fedjax_grid.runner.clients import ClientStates


def _tree(seed):
    rng = np.random.default_rng(seed)
    return {"conv": {"kernel": rng.normal(size=(3, 3)).astype(np.float32)},
            "bias": rng.normal(size=4).astype(np.float32)}


def test_accept_keeps_only_what_an_accepted_update_brings():
    s = ClientStates()
    s.accept(3, {"batch_stats": _tree(0), "codec_state": {"residual": _tree(1)},
                 "algorithm_state": None}, keep_batch_stats=False)
    assert s.get("batch_stats", 3) is None and s.get("codec", 3) is not None
    assert s.get("algorithm", 3) is None and s.get("codec", 4) is None
    s.accept(3, {"batch_stats": _tree(2), "algorithm_state": {"c_i": _tree(3)}}, keep_batch_stats=True)
    assert s.get("batch_stats", 3) is not None and sorted(s.of("algorithm")) == [3]


def test_store_round_trips_through_a_checkpoint_bitwise(tmp_path):
    s = ClientStates()
    for k in (5, 0, 2):
        s.put("algorithm", k, {"c_i": _tree(k)})
        s.put("codec", k, {"residual": _tree(10 + k)})
    s.put("version", 2, 7)
    save_checkpoint(tmp_path, 1, {"x": np.zeros(2)}, {}, {"clients": s.arrays()})
    _, meta, arrays = load_checkpoint(tmp_path / "ckpt-000001.npz")
    back = ClientStates()
    back.restore(arrays, meta)
    assert sorted(back.of("algorithm")) == [0, 2, 5] and back.of("version") == {2: 7}
    for k in (0, 2, 5):
        np.testing.assert_array_equal(back.get("algorithm", k)["c_i"]["conv"]["kernel"],
                                      _tree(k)["conv"]["kernel"])
        np.testing.assert_array_equal(back.get("codec", k)["residual"]["bias"], _tree(10 + k)["bias"])


def test_checkpoints_of_earlier_versions_read_into_the_slots(tmp_path):
    arrays = {"client_bn": {"1": _tree(1)}, "codec_state": {"3": {"residual": _tree(3)}}}
    meta = {"broadcast_chain": {"version": 4, "clients": {"1": 4, "3": 2}}}
    s = ClientStates()
    s.restore(arrays, meta)
    assert sorted(s.of("batch_stats")) == [1] and sorted(s.of("codec")) == [3]
    assert s.of("version") == {1: 4, 3: 2}
