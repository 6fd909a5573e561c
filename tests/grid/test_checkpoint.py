"""Checkpoints: bitwise round trips, atomic writes, keep-last-3, damage detection."""
import json
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_grid.errors import CheckpointError, UserError
from fedjax_grid.federated.algorithm import make_algorithm
from fedjax_grid.grid.checkpoint import (checkpoint_path, config_hash, latest_checkpoint,
                                         list_checkpoints, load_checkpoint, save_checkpoint)


def _server_state(seed=0, opt='fedadam'):
    rng = np.random.default_rng(seed)
    variables = {'params': {'Conv_0': {'kernel': rng.standard_normal((3, 3, 3, 4)).astype(np.float32),
                                       'bias': rng.standard_normal(4).astype(np.float32)}},
                 'batch_stats': {'BatchNorm_0': {'mean': rng.standard_normal(4).astype(np.float32)}}}
    algo = make_algorithm('mean', opt)
    state = algo.init(variables)
    client = jax.tree_util.tree_map(lambda x: (x + 0.1).astype(x.dtype), variables)
    state, _ = algo.apply(state, [(client, 5)])       # non-trivial optimizer state, round 1
    return state


def _assert_bitwise_equal(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        assert type(x) is type(y) or (isinstance(x, np.ndarray) and isinstance(y, np.ndarray))
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def test_server_state_round_trip_is_bitwise_with_template(tmp_path):
    state = _server_state()
    key = jax.random.PRNGKey(42)                       # raw uint32 key data
    typed = jax.random.key(7)                          # typed key
    strategy_state = {'perm': np.arange(10, dtype=np.int64)[::-1].copy(), 'epoch': 3, 'frac': 0.25}
    meta = {'config_hash': 'abc123', 'records': {'tasks': [[1, 'w', None]]}, 'note': 'hi'}
    p = save_checkpoint(tmp_path, 1, state, meta,
                        {'rng': key, 'typed_rng': typed, 'strategy': strategy_state})
    assert p == tmp_path / 'ckpt-000001.npz'
    tree, meta2, arrays = load_checkpoint(p, template=_server_state(seed=99), config_hash='abc123')
    _assert_bitwise_equal(tree, state)
    assert type(tree).__name__ == 'ServerState' and tree.round == 1 and isinstance(tree.round, int)
    assert meta2['records'] == meta['records'] and meta2['note'] == 'hi'
    assert meta2['_checkpoint']['round'] == 1
    np.testing.assert_array_equal(arrays['rng'], key)
    assert arrays['rng'].dtype == np.uint32
    assert jax.dtypes.issubdtype(arrays['typed_rng'].dtype, jax.dtypes.prng_key)
    assert (jax.random.key_data(arrays['typed_rng']) == jax.random.key_data(typed)).all()
    assert jax.random.uniform(arrays['typed_rng']) == jax.random.uniform(typed)   # same stream
    assert arrays['strategy']['epoch'] == 3 and isinstance(arrays['strategy']['epoch'], int)
    assert arrays['strategy']['frac'] == 0.25
    np.testing.assert_array_equal(arrays['strategy']['perm'], strategy_state['perm'])


def test_round_trip_without_template_and_special_dtypes(tmp_path):
    tree = {'a': [np.arange(3, dtype=np.int8), {'b': jnp.asarray([1.5, -2.0], jnp.bfloat16)}],
            'c': np.float32(2.5), 'd': True, 'f': {7: np.zeros((0, 2), np.float16)},
            'e': np.array([np.nan, np.inf, -0.0], np.float32)}
    p = save_checkpoint(tmp_path, 0, tree)
    got, _, arrays = load_checkpoint(p)
    assert arrays == {}
    assert got['a'][0].dtype == np.int8 and got['a'][0].tolist() == [0, 1, 2]
    assert got['a'][1]['b'].dtype == jnp.bfloat16
    assert np.asarray(got['a'][1]['b']).tobytes() == np.asarray(tree['a'][1]['b']).tobytes()
    assert isinstance(got['c'], np.float32) and got['c'] == 2.5
    assert got['d'] is True and got['f'][7].shape == (0, 2)
    assert got['e'].tobytes() == tree['e'].tobytes()             # NaN, inf and -0.0 bitwise


def test_no_pickle_in_the_file(tmp_path):
    p = save_checkpoint(tmp_path, 2, _server_state(), {'config_hash': 'x'}, {'k': np.ones(2)})
    with np.load(p, allow_pickle=False) as z:                    # must load without pickle
        header = json.loads(z['__header__'].tobytes())
        assert "tree.params['Conv_0']['kernel']" in z.files
    assert header['format_version'] == 1 and header['round'] == 2 and header['config_hash'] == 'x'
    with pytest.raises(UserError, match='object array'):
        save_checkpoint(tmp_path, 3, {'x': np.array([object()], dtype=object)})
    assert latest_checkpoint(tmp_path).name == 'ckpt-000002.npz'   # failed save left nothing


def test_keep_last_three_latest_and_temp_files_ignored(tmp_path):
    assert latest_checkpoint(tmp_path / 'missing') is None
    for r in range(1, 6):
        save_checkpoint(tmp_path, r, {'w': np.full(2, r, np.float32)})
    assert [r for r, _ in list_checkpoints(tmp_path)] == [3, 4, 5]
    (tmp_path / '.ckpt-000009.npz.tmp-123-abcd').write_bytes(b'partial')
    (tmp_path / 'ckpt-000010.npz.partial').write_bytes(b'x')
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 5)
    # resuming from round 4 and writing round 5 again drops nothing else; a lower round
    # written after higher ones (abandoned timeline) removes the higher ones
    save_checkpoint(tmp_path, 4, {'w': np.zeros(2, np.float32)})
    assert [r for r, _ in list_checkpoints(tmp_path)] == [3, 4]
    save_checkpoint(tmp_path, 6, {'w': np.zeros(2, np.float32)}, keep=None)
    assert [r for r, _ in list_checkpoints(tmp_path)] == [3, 4, 6]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.ckpt') and 'tmp-' in p.name
                and p.name != '.ckpt-000009.npz.tmp-123-abcd']


def _saved(tmp_path):
    return save_checkpoint(tmp_path, 7, _server_state(), {'config_hash': 'h1'},
                           {'rng': jax.random.PRNGKey(0)})


def test_truncated_file_is_detected(tmp_path):
    p = _saved(tmp_path)
    data = p.read_bytes()
    for n in (0, 10, len(data) // 2, len(data) - 20):
        p.write_bytes(data[:n])
        with pytest.raises(CheckpointError, match=f"checkpoint {p} is damaged") as e:
            load_checkpoint(p)
        assert '\n' not in str(e.value)


@pytest.mark.parametrize('where', [0.3, 0.6, 0.9])
def test_flipped_byte_is_detected(tmp_path, where):
    p = _saved(tmp_path)
    data = bytearray(p.read_bytes())
    i = int(len(data) * where)
    data[i] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match='damaged'):
        load_checkpoint(p)


def test_altered_content_with_valid_zip_is_detected_by_sha256(tmp_path):
    p = _saved(tmp_path)
    with np.load(p, allow_pickle=False) as z:
        entries = {k: z[k] for k in z.files}
    key = "tree.params['Conv_0']['bias']"
    entries[key] = entries[key] + np.float32(1e-3)                   # tamper, rewrite a valid zip
    with open(p, 'wb') as f:
        np.savez(f, **entries)
    assert zipfile.is_zipfile(p)
    with pytest.raises(CheckpointError, match='sha256 mismatch'):
        load_checkpoint(p)


def test_wrong_config_hash_and_template_mismatch(tmp_path):
    p = _saved(tmp_path)
    with pytest.raises(CheckpointError, match="config hash 'h1', not 'h2'"):
        load_checkpoint(p, config_hash='h2')
    other = _server_state(opt='fedavg')             # different optimizer state structure
    with pytest.raises(CheckpointError, match='does not match the template'):
        load_checkpoint(p, template=other)
    bigger = _server_state()._replace(params={'Conv_0': {'kernel': np.zeros((3, 3, 3, 8), np.float32),
                                                         'bias': np.zeros(4, np.float32)}})
    with pytest.raises(CheckpointError, match=r"shape \(3, 3, 3, 4\), template \(3, 3, 3, 8\)"):
        load_checkpoint(p, template=bigger)
    with pytest.raises(CheckpointError, match='does not exist'):
        load_checkpoint(tmp_path / 'ckpt-000099.npz')


def test_config_hash_is_canonical_and_bad_arguments():
    assert config_hash({'a': 1, 'b': [1, 2]}) == config_hash({'b': [1, 2], 'a': 1})
    assert config_hash({'a': 1}) != config_hash({'a': 2})
    with pytest.raises(UserError, match='keep=0'):
        save_checkpoint('/tmp', 1, {}, keep=0)
    with pytest.raises(UserError, match="array name 'a/b'"):
        save_checkpoint('/tmp', 1, {}, arrays={'a/b': np.ones(1)})


def test_resume_template_from_a_fresh_init_matches_a_later_state(tmp_path):
    """The engine resumes with template = algo.init(variables): shapes must not drift."""
    from fedjax_grid.federated.validation import NormGuard
    rng = np.random.default_rng(3)
    variables = {'params': {'w': rng.standard_normal((4, 2)).astype(np.float32)}}
    for guard in (None, NormGuard(max_norm_ratio=5.0)):
        algo = make_algorithm('mean', 'fedyogi', norm_guard=guard)
        state = algo.init(variables)
        for r in range(3):
            clients = [({'params': {'w': (state.params['w'] + 0.01 * rng.standard_normal((4, 2)))
                                    .astype(np.float32)}}, 10) for _ in range(3)]
            state, _ = algo.apply(state, clients)
        p = save_checkpoint(tmp_path, state.round, state, {'config_hash': 'h'})
        restored, _, _ = load_checkpoint(p, template=algo.init(variables), config_hash='h')
        _assert_bitwise_equal(restored, state)
        # and the restored state continues exactly like the original
        nxt = [({'params': {'w': np.ones((4, 2), np.float32)}}, 5)]
        _assert_bitwise_equal(algo.apply(restored, nxt)[0], algo.apply(state, nxt)[0])
