"""Property tests (hypothesis) over the config schema and the CLI: every generated input
either builds a valid config -- whose counts, sizes and durations a run can satisfy -- or
is refused with one line (exit code 2 from the CLI), quickly, with no traceback; names
never lead outside the runs folder."""
from __future__ import annotations

import pathlib

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from fedjax_grid.errors import UserError
from fedjax_grid.experiments import ExperimentConfig
from fedjax_grid.grid import run_dirs
from tests.conftest import within

#: Text with what breaks paths: separators, dots, NUL and other control characters.
PATHISH = st.text(st.sampled_from(list("ab.-_ /\\\x00\n\x1b\u202e~é")) | st.characters(),
                  max_size=40)


def _one_line(e: UserError) -> None:
    text = str(e)
    assert text and "\n" not in text and len(text) < 700, text


@settings(max_examples=300)
@given(name=PATHISH)
def test_a_name_is_refused_or_stays_inside_the_runs_folder(name, tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "runs-root"
    try:
        cfg = ExperimentConfig.from_dict({"name": name})
    except UserError as e:
        _one_line(e)
        assert e.path == "name"
        return
    path = run_dirs.new_run_dir(cfg.name, root)
    assert path.resolve().parent.parent == root.resolve(), (name, path)
    assert (pathlib.Path("runs") / cfg.name).resolve().parent == pathlib.Path("runs").resolve()


@settings(max_examples=200)
@given(path=PATHISH)
def test_a_path_is_refused_in_one_line_or_kept_as_given(path):
    try:
        cfg = ExperimentConfig.from_dict({"out_dir": path, "data": {"data_dir": path}})
    except UserError as e:
        _one_line(e)
        assert e.path in ("out_dir", "data.data_dir")
        return
    assert cfg.out_dir == path and "\x00" not in path and path.strip()


# ----------------------------------------------------------------- the schema and the CLI

def _all_keys() -> list[str]:
    """Every dotted config key: section fields, every component's parameters (choices,
    model.kwargs, data.options), and the bare names the CLI resolves."""
    from fedjax_grid.experiments.config import PARAMS_AT, REGISTRIES, _leaf_keys
    keys = {k for owners in _leaf_keys().values() for k in owners} | set(_leaf_keys())
    for key, registry in REGISTRIES.items():
        inside = PARAMS_AT.get(key, key)
        keys.update(f"{inside}.{p}" for e in registry.entries() for p in e.params.model_fields)
    return sorted(keys)


def _names() -> list[str]:
    from fedjax_grid.experiments.config import REGISTRIES
    return sorted({n for r in REGISTRIES.values() for n in r})


KEYS = _all_keys()
NAMES = _names()
NUMBERS = st.one_of(
    st.integers(-3, 12),
    st.sampled_from([0, 1, 2, 4, 8, 255, 256, 257, 1023, 1024, 100_000, 100_001, 10 ** 6,
                     10 ** 6 + 1, 2 ** 31, 2 ** 32, 10 ** 12, 10 ** 400, -(10 ** 12)]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e400", "-1e400", ".nan", ".inf", "1e-300", "0.5", "0.999", "1.5", "60.0"]),
).map(str)
SCALARS = st.one_of(NUMBERS, st.sampled_from(["null", "~", "true", "false", "''", "[]", "{}",
                                              "[1, 2]", "{a: 1}", "{a: 1, a: 2}", "*x", "&a 1"]),
                    st.sampled_from(NAMES), st.text(max_size=20))
CALLS = st.builds(lambda n, a: f"{n}({a})", st.sampled_from(NAMES),
                  st.lists(st.one_of(NUMBERS, st.builds(lambda k, v: f"{k.split('.')[-1]}={v}",
                                                        st.sampled_from(KEYS), NUMBERS)),
                           max_size=3).map(", ".join))


def _field_values(field) -> list[str]:
    """Values around a field's bounds (boundary values), as --set text."""
    import typing

    import annotated_types

    from fedjax_grid.registry import _unwrap
    base, optional = _unwrap(field.annotation)
    out = ["null"] if optional else []
    if typing.get_origin(base) is typing.Literal:
        return out + [str(v) for v in typing.get_args(base)] + ["bogus"]
    if base is bool:
        return out + ["true", "false", "1", "yes"]
    if base in (int, float):
        for m in field.metadata:
            for bound in ("ge", "gt", "le", "lt"):
                v = getattr(m, bound, None) if isinstance(m, getattr(
                    annotated_types, bound.capitalize())) else None
                if v is not None:
                    step = 1 if base is int else 0.5
                    out += [str(v), str(v - step), str(v + step)]
        return out + (["0", "1", "2", "3", "10"] if base is int else ["0.0", "0.5", "1.0", "2.5"])
    return out + ["x", "'a b'"]


def _candidates() -> dict[str, list[str]]:
    """Dotted key -> values to try (boundary values of its field; names of a choice)."""
    from fedjax_grid.experiments.config import PARAMS_AT, REGISTRIES, SECTIONS
    out = {}
    for section, model in SECTIONS.items():
        for name, field in model.model_fields.items():
            key = f"{section}.{name}"
            out[key] = list(REGISTRIES[key]) if key in REGISTRIES else _field_values(field)
    for key, registry in REGISTRIES.items():
        inside = PARAMS_AT.get(key, key)
        for e in registry.entries():
            for p, field in e.params.model_fields.items():
                out.setdefault(f"{inside}.{p}", []).extend(_field_values(field))
    names = ["x", "run-1", "'a b'", "../up", "/abs/olute", "a/b", "..", ".", '"a\\0b"',
             '"tab\\there"', "'a\\b'", '""', "null"]
    out["name"] = names
    out["out_dir"] = names + ["runs/x", "../elsewhere"]
    out["seed"] = ["0", "-1", "4294967295", "4294967296", "1.5"]
    return out


CANDIDATES = _candidates()
CKEYS = sorted(CANDIDATES)
SETS = st.lists(st.one_of(
    # mostly: a real key with a value at or beyond its bounds
    st.sampled_from(CKEYS).flatmap(lambda k: st.sampled_from(CANDIDATES[k]).map(
        lambda v: f"{k}={v}")),
    st.sampled_from(CKEYS).flatmap(lambda k: st.sampled_from(CANDIDATES[k]).map(
        lambda v: f"{k}={v}")),
    st.sampled_from(CKEYS).flatmap(lambda k: st.sampled_from(CANDIDATES[k]).map(
        lambda v: f"{k}={v}")),
    # sometimes: any key (bare names too) with any value, or noise
    st.builds(lambda k, v: f"{k}={v}", st.one_of(st.sampled_from(KEYS), st.text(max_size=12)),
              st.one_of(SCALARS, CALLS)),
), max_size=5)


class _Reached(Exception):
    """The CLI got as far as starting the run: the config passed every check."""

    def __init__(self, cfg):
        super().__init__("reached")
        self.cfg = cfg


def _satisfiable(cfg) -> None:
    """What the run will ask of the grid can happen (the engine's own derivations)."""
    from fedjax_grid.runner.policies.asynchronous import buffer_size, concurrency
    c = cfg.partition.num_clients
    assert 1 <= cfg.clients_per_round <= c
    if cfg.server.mode == "async":
        assert concurrency(cfg) <= c and 1 <= buffer_size(cfg) <= concurrency(cfg)
    else:
        assert cfg.clients_per_round + cfg.grid.overcommit <= c
    for seconds in (cfg.grid.deadline_s, cfg.grid.connect_timeout_s):
        assert seconds is None or 1.0 <= seconds <= 7 * 24 * 3600
    name = cfg.name  # one folder name inside the runs folder
    assert name not in ("", ".", "..") and pathlib.PurePosixPath(name).name == name, name
    assert "\\" not in name and all(c.isprintable() for c in name), name


def _cli(argv, monkeypatch, capsys, limit_s=10.0):
    """``fedjax-grid run ARGV`` stopped where the run would start: the config, or None
    after checking the one-line refusal (exit 2, no traceback, in time). A run that is
    reached writes into a folder whose path prints as it is (no control characters)."""
    import time

    from fedjax_grid import cli

    def reached(cfg, out, resume, console):
        assert str(out).isprintable() and str(out).strip(), repr(out)
        raise _Reached(cfg)

    monkeypatch.setattr(cli, "_new_run", reached)
    t = time.time()
    try:
        code = cli.main(argv)
    except _Reached as r:
        assert within(time.time() - t, limit_s)
        capsys.readouterr()
        event("accepted")
        return r.cfg
    err = capsys.readouterr().err
    event("refused: " + err.split(" is ")[0].split(":")[1].strip()[:30] if ":" in err else err)
    assert within(time.time() - t, limit_s), argv
    assert code == 2, (argv, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and len(err) < 700, (argv, err)
    return None


FLAGS = st.lists(st.one_of(
    st.tuples(st.just("--workers"), st.integers(-2, 300).map(str)),
    st.tuples(st.just("--more-rounds"), st.sampled_from(["0", "1", "2", "3", "100001", "x"])),
    st.tuples(st.just("--scheduler"), st.one_of(st.sampled_from(
        ["tcp://127.0.0.1:8786", "tls://127.0.0.1:8786", "127.0.0.1:0", "tcp://[::1]:8786",
         "tcp://localhost:99999", "inproc://x"]), st.text(max_size=20))),
    st.tuples(st.just("--out"), PATHISH),
    st.tuples(st.just("--preset"), st.sampled_from(["quickstart", "paper-vgg16-cifar10-balanced",
                                                    "nope"])),
).map(list), max_size=2)


@settings(max_examples=250)
@given(sets=SETS, flags=FLAGS)
def test_any_cli_input_is_refused_in_one_line_or_gives_a_satisfiable_config(
        sets, flags, monkeypatch, capsys, tmp_path_factory):
    monkeypatch.chdir(tmp_path_factory.getbasetemp())
    argv = ["run"] + [x for f in flags for x in f]
    for s in sets:
        argv += ["--set", s]
    cfg = _cli(argv, monkeypatch, capsys)
    if cfg is not None:
        _satisfiable(cfg)
        keys = [s.split("=", 1)[0].strip() for s in sets if "=" in s]
        assert len(keys) == len(set(keys)), sets  # a key given twice is refused


#: The counts that bound one another: clients, clients per round, the round policy, tasks in
#: flight, buffer, spares.
COUNTS = st.fixed_dictionaries({
    "partition.num_clients": st.integers(1, 6), "server.mode": st.sampled_from(["sync", "async"]),
}, optional={
    "training.clients_per_round": st.one_of(st.none(), st.integers(0, 7)),
    "server.concurrency": st.one_of(st.none(), st.integers(0, 7)),
    "server.buffer_size": st.one_of(st.none(), st.integers(0, 7)),
    "grid.overcommit": st.integers(0, 4),
    "grid.deadline_s": st.sampled_from(["null", "0.5", "1", "30"]),
    "grid.workers": st.integers(1, 3),
})


@settings(max_examples=200)
@given(counts=COUNTS)
def test_counts_that_bound_one_another_are_refused_or_satisfiable(
        counts, monkeypatch, capsys, tmp_path_factory):
    monkeypatch.chdir(tmp_path_factory.getbasetemp())
    argv = ["run"]
    for k, v in counts.items():
        argv += ["--set", f"{k}={'null' if v is None else v}"]
    cfg = _cli(argv, monkeypatch, capsys)
    if cfg is not None:
        _satisfiable(cfg)


#: YAML documents: any value, mappings with section keys, repeated keys, nested choices.
_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-5, 10 ** 7), st.floats(),
                  st.text(max_size=8), st.sampled_from(NAMES))
_SECTION_KEYS = st.sampled_from(sorted({k.split(".")[0] for k in KEYS if "." in k} | {"name", "seed"}))


def _yaml(value, indent=""):
    import json
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, tuple):  # a mapping as (key, value) pairs: keys may repeat
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_yaml(v)}" for k, v in value) + "}"
    return json.dumps(value) if not isinstance(value, float) or value == value else ".nan"


DOCS = st.recursive(
    _LEAF, lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(st.tuples(st.one_of(_SECTION_KEYS, st.sampled_from(KEYS).map(
            lambda k: k.split(".")[-1])), inner), max_size=4).map(tuple)), max_leaves=12)


def _well_formed(doc) -> bool:
    """A mapping at the top, and no mapping anywhere with a key twice."""
    def unique(v):
        if isinstance(v, list):
            return all(unique(x) for x in v)
        if isinstance(v, tuple):
            keys = [str(k) for k, _ in v]
            return len(keys) == len(set(keys)) and all(unique(x) for _, x in v)
        return True
    return isinstance(doc, tuple) and unique(doc)  # {} (no sections) means the defaults


@settings(max_examples=150)
@given(doc=DOCS, raw=st.one_of(st.none(), st.none(), st.text(max_size=60)))
def test_any_config_file_is_refused_in_one_line_or_gives_a_satisfiable_config(
        doc, raw, monkeypatch, capsys, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzz-config.yaml"
    path.write_text(_yaml(doc) if raw is None else raw, encoding="utf-8", errors="surrogatepass")
    cfg = _cli(["run", "--config", str(path)], monkeypatch, capsys)
    if cfg is not None:
        _satisfiable(cfg)
        # an empty document, a list or a scalar, or a key given twice is never accepted
        assert raw is not None or _well_formed(doc), _yaml(doc)


# ----------------------------------------------------------------- a few real runs

#: The tiny run every generated setting is added to (digits, VGG-11 at 1/8 width).
TINY = {"model.kwargs": "{width: 0.125, norm: batch, head: cifar}", "training.rounds": 1,
        "data.max_test_examples": 64, "training.batch_size": 32, "partition.num_clients": 2}
RUN_SETTINGS = st.fixed_dictionaries({"server.mode": st.sampled_from(["sync", "async"])}, optional={
    "partition.num_clients": st.integers(1, 3),
    "training.clients_per_round": st.integers(1, 3),
    "server.concurrency": st.integers(1, 3),
    "server.buffer_size": st.integers(1, 3),
    "training.batch_size": st.sampled_from([32, 100_000]),
    "grid.overcommit": st.integers(0, 1),
    "server.aggregator": st.sampled_from(["mean", "median", "trimmed_mean(0.2)"]),
    "server.codec": st.sampled_from(["none", "int8", "quant(4)"]),
    "grid.deadline_s": st.sampled_from(["null", "0.5", "300"]),
    "partition.distribution": st.sampled_from(["iid", "dirichlet(0.5)"]),
})


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    """A LocalCluster of one worker process on 127.0.0.1 (the runs reach it with --scheduler)."""
    from fedjax_grid.grid.cluster import open_cluster
    from tests.grid.conftest import tiny_config
    cfg = tiny_config(**{"grid.workers": 1})
    handle = open_cluster(cfg.grid, local_directory=str(tmp_path_factory.mktemp("dask")))
    yield handle.client.scheduler.address
    handle.close()


@settings(max_examples=4)
@given(setting=RUN_SETTINGS)
def test_a_generated_setting_runs_one_round_or_is_refused_in_one_line(
        setting, one_worker, capsys, tmp_path_factory):
    import time

    from fedjax_grid.cli import main
    out = tmp_path_factory.mktemp("fuzz-run")
    argv = ["run", "--scheduler", one_worker, "--out", str(out), "--no-plots", "--quiet"]
    for k, v in {**TINY, **setting}.items():
        argv += ["--set", f"{k}={v}"]
    t = time.time()
    code = main(argv)
    elapsed = time.time() - t
    err = capsys.readouterr().err
    if code == 0:
        event("ran one round")
        import pandas as pd
        rounds = pd.read_csv(out / "rounds.csv")
        assert rounds["round"].tolist() == [1], rounds
        assert within(elapsed, 300), elapsed
    else:
        event("refused")
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err[-3000:]
        assert within(elapsed, 60), elapsed
        assert not (out / "rounds.csv").exists()
