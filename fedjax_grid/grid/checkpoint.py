"""Atomic, pickle-free checkpoints: one ``ckpt-<round:06d>.npz`` file per round.

Layout of a checkpoint (a standard uncompressed ``.npz`` zip, readable with
``np.load(path, allow_pickle=False)``):

* ``tree['params']['Conv_0']['kernel']`` ... one ``.npy`` entry per leaf of the
  checkpointed pytree, keyed by its tree path string (``jax.tree_util.keystr``);
* ``arrays/<name>[/<name>...]`` the extra named arrays (rng key data, the
  partition strategy's state, ...), nested dicts flattened with ``/``;
* ``__header__`` a uint8 array holding UTF-8 JSON: format and fedjax_grid
  versions, round, creation time, ``config_hash`` (from ``meta``), ``meta``
  (any JSON, e.g. records and config), and per entry its structured tree path,
  dtype, shape and kind (so the pytree can be rebuilt without pickle);
* ``__sha256__`` the hex sha256 over the header and every entry's name, dtype,
  shape and bytes: any alteration, truncation or mix-up is detected on load
  and raised as :class:`~fedjax_grid.errors.CheckpointError`, never loaded silently.

Writing is atomic: the file is written to a hidden temp file in the same
directory, flushed and fsync'ed, then ``os.replace``'d into place (and the
directory fsync'ed), so a crash leaves either the old set of checkpoints or the
new one, plus at worst a stale ``.ckpt-*.tmp-*`` file that is ignored.

Special leaves: Python ``int``/``float``/``bool`` come back as Python scalars;
typed JAX PRNG keys (``jax.random.key``) are stored as their key data plus the
implementation name and come back as typed keys; raw ``uint32`` keys
(``jax.random.PRNGKey``) are plain arrays; dtypes numpy cannot store natively
(``bfloat16`` ...) are stored as unsigned-integer views. All round trips are bitwise.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import jax
import numpy as np

from fedjax_grid import version
from fedjax_grid.atomic_write import atomic_path
from fedjax_grid.errors import CheckpointError, UserError

PyTree = Any

FORMAT = 'fedjax_grid.checkpoint'
FORMAT_VERSION = 1
HEADER_KEY = '__header__'
DIGEST_KEY = '__sha256__'
_NAME_RE = re.compile(r'^ckpt-(\d{6,})\.npz$')
_STD_KINDS = set('biufcSUMm')   # dtype kinds np.save stores without pickle


# ---------------------------------------------------------------- helpers

def checkpoint_path(directory: os.PathLike | str, round_: int) -> Path:
    """``<directory>/ckpt-<round_:06d>.npz``."""
    return Path(directory) / f"ckpt-{int(round_):06d}.npz"


def config_hash(obj: Any) -> str:
    """sha256 hex digest of ``obj`` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(obj, sort_keys=True, separators=(',', ':'), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _is_prng_key(x) -> bool:
    dtype = getattr(x, 'dtype', None)
    try:
        return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    except TypeError:
        return False


def _encode(x) -> tuple[np.ndarray, dict]:
    """Leaf -> (numpy array to store, description for the header)."""
    if isinstance(x, bool):
        return np.asarray(x), {'kind': 'bool'}
    if isinstance(x, int):
        return np.asarray(x, np.int64), {'kind': 'int'}
    if isinstance(x, float):
        return np.asarray(x, np.float64), {'kind': 'float'}
    if _is_prng_key(x):
        impl = jax.random.key_impl(x)
        return np.asarray(jax.random.key_data(x)), {'kind': 'prng_key', 'impl': str(impl)}
    kind = 'npscalar' if isinstance(x, np.generic) else 'ndarray'
    a = np.asarray(x)
    if a.dtype.kind == 'O':
        raise UserError(f"cannot checkpoint an object array ({type(x).__name__}); "
                        f"allowed: numeric numpy/JAX arrays and Python scalars")
    desc = {'kind': kind, 'dtype': a.dtype.str}
    if a.dtype.kind not in _STD_KINDS:                  # bfloat16 & co: store the raw bits
        desc = {'kind': kind, 'dtype': a.dtype.name, 'view': True}
        a = a.view(np.dtype(f'u{a.dtype.itemsize}'))
    return a, desc


def _decode(a: np.ndarray, desc: dict):
    kind = desc.get('kind')
    if kind == 'bool':
        return bool(a)
    if kind == 'int':
        return int(a)
    if kind == 'float':
        return float(a)
    if kind == 'prng_key':
        return jax.random.wrap_key_data(a, impl=desc['impl'])
    if desc.get('view'):
        a = a.view(jax.numpy.dtype(desc['dtype']))
    elif a.dtype != np.dtype(desc['dtype']):
        raise ValueError(f"entry dtype {a.dtype} is not the recorded {desc['dtype']}")
    return a[()] if kind == 'npscalar' else a


def _path_entry(k) -> list:
    tu = jax.tree_util
    if isinstance(k, tu.DictKey):
        key = k.key
        if isinstance(key, (str, int)) and not isinstance(key, bool):
            return ['dict', key]
        raise UserError(f"cannot checkpoint dict key {key!r}; allowed: str or int keys")
    if isinstance(k, tu.SequenceKey):
        return ['seq', k.idx]
    if isinstance(k, tu.GetAttrKey):
        return ['attr', k.name]
    if isinstance(k, tu.FlattenedIndexKey):
        return ['flat', k.key]
    raise UserError(f"cannot checkpoint tree path entry {k!r}")


def _flatten_arrays(arrays: dict, prefix: str = '') -> Iterator[tuple[str, Any]]:
    for name, value in arrays.items():
        if not isinstance(name, str) or not name or '/' in name:
            raise UserError(f"checkpoint array name {name!r} is invalid; allowed: non-empty str without '/'")
        if isinstance(value, dict):
            if not value:
                raise UserError(f"checkpoint array group {prefix + name!r} is empty; allowed: non-empty dicts")
            yield from _flatten_arrays(value, prefix + name + '/')
        else:
            yield prefix + name, value


def _digest(header_bytes: bytes, entries: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(header_bytes)
    for key in sorted(entries):
        a = np.ascontiguousarray(entries[key])
        h.update(f"\0{key}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.reshape(-1).view(np.uint8) if a.size else b'')
    return h.hexdigest()


# ---------------------------------------------------------------- listing

def list_checkpoints(directory: os.PathLike | str) -> list[tuple[int, Path]]:
    """``(round, path)`` of every ``ckpt-NNNNNN.npz`` in ``directory``, by round;
    temp files and other names are ignored; a missing directory gives ``[]``."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _NAME_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(directory: os.PathLike | str) -> Optional[Path]:
    """Path of the highest-round checkpoint in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


# ---------------------------------------------------------------- save

def save_checkpoint(directory: os.PathLike | str, round_: int, tree: PyTree,
                    meta: Optional[dict] = None, arrays: Optional[dict] = None,
                    *, keep: Optional[int] = 3) -> Path:
    """Atomically write ``ckpt-<round_:06d>.npz`` and return its path.

    tree: the pytree to store (e.g. a ServerState); leaves numpy/JAX arrays,
      Python scalars or typed PRNG keys.
    meta: JSON-serialisable dict (``meta['config_hash']`` is also put in the
      header for :func:`load_checkpoint`'s check), e.g. records and config.
    arrays: named numpy arrays / scalars / PRNG keys, nested dicts allowed
      (e.g. ``{'rng': key_data, 'strategy': strategy_state}``).
    keep: after writing, keep only the ``keep`` highest-round checkpoints (None:
      keep all); checkpoints of rounds *after* ``round_`` (an abandoned timeline)
      are removed as well, so the latest checkpoint is always this one.
    """
    if keep is not None and (not isinstance(keep, int) or keep < 1):
        raise UserError(f"checkpoint keep={keep!r} is invalid; allowed: an integer >= 1 or None")
    if not isinstance(round_, (int, np.integer)) or round_ < 0:
        raise UserError(f"checkpoint round={round_!r} is invalid; allowed: an integer >= 0")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    entries, leaves_desc, treedef = _tree_entries(tree)
    arrays_desc = _array_entries(arrays or {}, entries)
    header = {'format': FORMAT, 'format_version': FORMAT_VERSION,
              'fedjax_grid_version': version.__version__, 'round': int(round_),
              'created_unix': time.time(), 'config_hash': meta.get('config_hash'),
              'treedef': str(treedef), 'leaves': leaves_desc, 'arrays': arrays_desc, 'meta': meta}
    _seal(header, entries)
    final = checkpoint_path(directory, round_)
    with atomic_path(final) as tmp:
        with open(tmp, 'wb') as f:
            np.savez(f, allow_pickle=False, **entries)
    _prune(directory, int(round_), keep)
    return final


def update_meta(path: os.PathLike | str, updates: dict) -> Path:
    """Atomically rewrite the checkpoint ``path`` with ``updates`` merged into its meta
    (arrays, tree and round unchanged; verified on read, sealed again on write). A Stop
    adds the tasks of the interrupted round to the records of the checkpoint it resumes from."""
    path = Path(path)
    header, entries = _read(path)
    header = {**header, 'meta': {**header.get('meta', {}), **updates},
              'created_unix': time.time()}
    if 'config_hash' in updates:
        header['config_hash'] = updates['config_hash']
    _seal(header, entries)
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            np.savez(f, allow_pickle=False, **entries)
    return path


def _tree_entries(tree: PyTree) -> tuple[dict[str, np.ndarray], list[dict], Any]:
    """The stored arrays of ``tree``'s leaves (keyed ``tree<path>``), their header
    descriptions and the treedef."""
    entries: dict[str, np.ndarray] = {}
    leaves_desc = []
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    for path, leaf in flat:
        key = 'tree' + jax.tree_util.keystr(path)
        if key in entries:
            raise UserError(f"checkpoint tree has two leaves with the path {key!r}; allowed: distinct paths")
        a, desc = _encode(leaf)
        entries[key] = a
        leaves_desc.append({'key': key, 'path': [_path_entry(k) for k in path],
                            'shape': list(a.shape), **desc})
    return entries, leaves_desc, treedef


def _array_entries(arrays: dict, entries: dict[str, np.ndarray]) -> list[dict]:
    """Add the named ``arrays`` to ``entries`` (keyed ``arrays/<name>``); their descriptions."""
    arrays_desc = []
    for name, value in _flatten_arrays(arrays):
        key = 'arrays/' + name
        a, desc = _encode(value)
        entries[key] = a
        arrays_desc.append({'key': key, 'name': name, 'shape': list(a.shape), **desc})
    return arrays_desc


def _seal(header: dict, entries: dict[str, np.ndarray]) -> None:
    """Add the JSON ``header`` and the digest over it and every entry to ``entries``."""
    try:
        header_bytes = json.dumps(header, default=_json_default).encode()
    except (TypeError, ValueError) as e:
        raise UserError(f"checkpoint meta is not JSON serialisable ({e}); allowed: JSON values") from None
    entries[HEADER_KEY] = np.frombuffer(header_bytes, np.uint8)
    entries[DIGEST_KEY] = np.frombuffer(_digest(header_bytes, entries).encode(), np.uint8)


def _prune(directory: Path, current: int, keep: Optional[int]) -> None:
    found = list_checkpoints(directory)
    stale = [p for r, p in found if r > current]
    if keep is not None:
        older = [p for r, p in found if r <= current]
        stale += older[:-keep]
    for p in stale:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------- load

def _damaged(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} is damaged ({why}); allowed: an intact checkpoint "
                           f"written by fedjax_grid (delete it to resume from the previous one)")


def _read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; allowed: an existing ckpt-NNNNNN.npz file")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if HEADER_KEY not in names or DIGEST_KEY not in names:
                raise _damaged(path, 'no header or digest entry')
            entries = {name: z[name] for name in names}
    except CheckpointError:
        raise
    except Exception as e:   # BadZipFile, CRC errors, truncated members, bad .npy headers ...
        msg = str(e).splitlines()[0] if str(e) else ''
        raise _damaged(path, f"{type(e).__name__}: {msg}"[:200]) from None
    header_bytes = entries.pop(HEADER_KEY).tobytes()
    stored = entries.pop(DIGEST_KEY).tobytes().decode('ascii', 'replace')
    if _digest(header_bytes, {**entries, HEADER_KEY: np.frombuffer(header_bytes, np.uint8)}) != stored:
        raise _damaged(path, 'sha256 mismatch: the content was altered')
    try:
        header = json.loads(header_bytes)
    except ValueError:
        raise _damaged(path, 'header is not JSON') from None
    if header.get('format') != FORMAT:
        raise _damaged(path, f"format {header.get('format')!r} is not {FORMAT!r}")
    if header.get('format_version', math.inf) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {header.get('format_version')}; "
                              f"allowed: <= {FORMAT_VERSION} (upgrade fedjax_grid)")
    return header, entries


def _rebuild(leaves: list, paths: list[list]) -> PyTree:
    """Nested dicts/lists from structured paths (attr paths become dict keys)."""
    if not paths:
        return None
    if len(paths) == 1 and not paths[0]:
        return leaves[0]
    groups: dict = {}
    kinds = set()
    for leaf, path in zip(leaves, paths):
        kind, key = path[0]
        kinds.add(kind)
        groups.setdefault(key, ([], []))
        groups[key][0].append(leaf)
        groups[key][1].append(path[1:])
    built = {k: _rebuild(ls, ps) for k, (ls, ps) in groups.items()}
    if kinds <= {'seq', 'flat'}:
        return [built[i] for i in sorted(built)]
    return built


def load_checkpoint(path: os.PathLike | str, template: Optional[PyTree] = None, *,
                    config_hash: Optional[str] = None) -> tuple[PyTree, dict, dict]:
    """Read and verify a checkpoint: ``(tree, meta, arrays)``.

    template: a pytree with the structure to restore (e.g. the freshly initialised
      ServerState); its leaf paths, shapes and dtypes must match. Without it the
      tree is rebuilt as nested dicts/lists from the stored paths (NamedTuple
      fields become dict keys, ``None`` subtrees are lost).
    config_hash: if given, the checkpoint's ``config_hash`` must equal it.
    meta: the JSON meta, plus ``meta['_checkpoint']`` = {round, fedjax_grid_version,
      format_version, created_unix}. arrays: nested dicts of numpy arrays / scalars / keys.
    Raises CheckpointError (one line naming the file) on any damage or mismatch.
    """
    path = Path(path)
    header, entries = _read(path)
    if config_hash is not None and header.get('config_hash') != config_hash:
        raise CheckpointError(f"checkpoint {path} has config hash {header.get('config_hash')!r}, not "
                              f"{config_hash!r}; allowed: a checkpoint of the same experiment config")
    try:
        leaves = [_decode(entries[d['key']], d) for d in header['leaves']]
        arrays: dict = {}
        for d in header['arrays']:
            *groups, last = d['name'].split('/')
            node = arrays
            for g in groups:
                node = node.setdefault(g, {})
            node[last] = _decode(entries[d['key']], d)
    except (KeyError, TypeError, ValueError) as e:
        raise _damaged(path, f"inconsistent header ({type(e).__name__}: {e})"[:200]) from None

    if template is None:
        tree = _rebuild(leaves, [d['path'] for d in header['leaves']])
    else:
        flat_t, treedef = jax.tree_util.tree_flatten_with_path(template)
        want = ['tree' + jax.tree_util.keystr(p) for p, _ in flat_t]
        got = [d['key'] for d in header['leaves']]
        if want != got:
            missing = [k for k in want if k not in set(got)][:2]
            extra = [k for k in got if k not in set(want)][:2]
            raise CheckpointError(f"checkpoint {path} does not match the template (missing {missing}, "
                                  f"unexpected {extra}); allowed: a checkpoint of the same model and algorithm")
        for (p, t), leaf, d in zip(flat_t, leaves, header['leaves']):
            if d['kind'] == 'prng_key':
                continue
            if hasattr(t, 'shape') and tuple(t.shape) != tuple(np.shape(leaf)):
                raise CheckpointError(f"checkpoint {path} leaf {d['key']} has shape {tuple(np.shape(leaf))}, "
                                      f"template {tuple(t.shape)}; allowed: the same model")
            if hasattr(t, 'dtype') and hasattr(leaf, 'dtype') and np.dtype(t.dtype) != leaf.dtype:
                raise CheckpointError(f"checkpoint {path} leaf {d['key']} has dtype {leaf.dtype}, "
                                      f"template {np.dtype(t.dtype)}; allowed: the same model")
        tree = jax.tree_util.tree_unflatten(treedef, leaves)

    meta = dict(header.get('meta') or {})
    meta['_checkpoint'] = {k: header.get(k) for k in
                           ('round', 'fedjax_grid_version', 'format_version', 'created_unix')}
    return tree, meta, arrays
