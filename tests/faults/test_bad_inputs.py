"""The complete bad-input table: CLI flags, config files, data, checkpoints, addresses.

Each case must give exactly one stderr line ``error: ...`` naming the bad value, exit
code 2, no traceback, and leave no output that looks like a complete run (no
rounds.csv, tasks.csv, config.json or checkpoint in the output folder).
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from fedjax_grid.cli import main
from tests.conftest import SHARED_DATA, within
from tests.faults.conftest import write_pickled_npz

S = "--set"


def _truncated_cifar(tmp):
    src = SHARED_DATA / "cifar-10-binary-sample.tar.gz"
    if not src.exists():
        pytest.skip(f"{src} not present")
    dst = tmp / "cifar-10-binary.tar.gz"
    dst.write_bytes(src.read_bytes()[:300_000])
    return dst


def _corrupt_textures(tmp):
    src = SHARED_DATA / "dtd-texture-sample.zip"
    if not src.exists():
        pytest.skip(f"{src} not present")
    dst = tmp / "dtd-corrupt.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for n in zin.namelist():
            data = zin.read(n)
            if n.endswith("banded_0002.jpg"):
                data = data[:200] + b"\x00" * 50  # a truncated, undecodable JPEG
            zout.writestr(n, data)
    return dst


def _ckpt_dir(tmp):
    d = tmp / "out" / "checkpoints"
    d.mkdir(parents=True)
    return d


def _garbage_ckpt(tmp):
    (_ckpt_dir(tmp) / "ckpt-000002.npz").write_bytes(b"PK\x03\x04 this is not a checkpoint")


def _altered_ckpt(tmp):
    """A real checkpoint whose array was changed after writing (sha256 mismatch)."""
    from fedjax_grid.grid.checkpoint import save_checkpoint
    d = _ckpt_dir(tmp)
    path = save_checkpoint(d, 1, {"w": np.zeros(4, np.float32)}, {"round": 1})
    path = pathlib.Path(path) if path else next(d.glob("ckpt-*.npz"))
    with np.load(path, allow_pickle=False) as z:
        entries = {k: z[k] for k in z.files}
    for k, v in entries.items():
        if v.dtype == np.float32:
            entries[k] = v + 1.0
    with open(path, "wb") as f:
        np.savez(f, **entries)


def _pickled_ckpt(tmp):
    """A checkpoint-named npz holding a pickled object: must be refused, never unpickled."""
    marker = tmp / "UNPICKLED"
    write_pickled_npz(_ckpt_dir(tmp) / "ckpt-000001.npz", marker)


def _bad_yaml(tmp):
    (tmp / "bad.yaml").write_text("training: {rounds: [1, 2}\n")


def _list_yaml(tmp):
    (tmp / "list.yaml").write_text("- 1\n- 2\n")


def _unknown_key_yaml(tmp):
    (tmp / "unk.yaml").write_text(json.dumps({"training": {"epochz": 3}}))


def _bad_value_json(tmp):
    (tmp / "bad.json").write_text(json.dumps({"partition": {"distribution": {"name": "balanced",
                                                                             "beta": 7}}}))


def _legacy_bad_value_json(tmp):
    """A file of the earlier flat shape: its value is checked where it moved to."""
    (tmp / "old.json").write_text(json.dumps({"partition": {"distribution": "balanced", "beta": 7}}))


def _binary_config(tmp):
    (tmp / "bin.yaml").write_bytes(b"\xff\xfe\x00\x81garbage")


BIG = "9" * 400          # a 400-digit number
LONG = "A" * 100_000     # a 100,000-character value


def _big_yaml(section, key, value=BIG):
    def setup(tmp):
        (tmp / "big.yaml").write_text(f"{section}:\n  {key}: {value}\n")
    return setup


def _tls_yaml(tmp):
    (tmp / "tls.yaml").write_text("grid:\n  scheduler: tls://127.0.0.1:8786\n")


_PREPARED = {}


def _prepared_digits(tmp):
    """A fresh copy of digits prepared as array_record in {tmp}/dd; returns the train shard."""
    import shutil
    import tempfile
    if "dir" not in _PREPARED:
        from fedjax_grid.data import prepare_source
        _PREPARED["dir"] = pathlib.Path(tempfile.mkdtemp(prefix="prepared-digits-"))
        prepare_source("digits", data_dir=_PREPARED["dir"])
    shutil.copytree(_PREPARED["dir"], tmp / "dd")
    return next((tmp / "dd").rglob("digits-train.array_record-*"))


def _damaged_array_record(how):
    def setup(tmp):
        shard = _prepared_digits(tmp)
        data = shard.read_bytes()
        shard.write_bytes({"truncated-small": data[:20_000], "truncated-half": data[:len(data) // 2],
                           "empty": b"", "garbage": b"\x13\x37" * (len(data) // 2)}[how])
    return setup


ARRAY_RECORD = ["run", S, "data.data_dir={tmp}/dd", S, "data.options={storage: array_record}"]


def _a_file(tmp):
    (tmp / "afile").write_text("not a folder")


def _a_dir(tmp):
    (tmp / "cfgdir").mkdir()


#: billion laughs: 9 levels of 9 aliases, ~387 million values once expanded.
_LAUGHS = "".join(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))


def _bomb(where):
    def setup(tmp):
        body = "  l0: &l0 [lol]\n" + _LAUGHS
        if where == "model":
            text = "model:\n  name: vgg11\n  kwargs:\n    junk:\n" + "".join("    " + l + "\n" for l in body.splitlines()) + "    boom: *l9\n"
        elif where == "options":
            text = "data:\n  options:\n" + body.replace("  l", "    l") + "    boom: *l9\n"
        else:  # a self-referencing alias
            text = "model:\n  kwargs:\n    loop: &loop [*loop, *loop]\n"
        (tmp / "bomb.yaml").write_text(text)
    return setup


_INLINE_BOMB = ("model.kwargs={a: &a [x, x, x, x, x, x, x, x, x], b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a], "
                "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b], d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c], "
                "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d], f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e], "
                "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f], h: [*g, *g, *g, *g, *g, *g, *g, *g, *g]}")


# (id, argv (with {tmp}), expected text in the error, set-up function or None)
CASES = [
    # -- flags and presets --
    ("unknown-preset", ["run", "--preset", "nope"], "'nope'", None),
    ("unknown-command", ["frobnicate"], "'frobnicate'", None),
    ("unknown-flag", ["run", "--bogus-flag"], "--bogus-flag", None),
    ("workers-0", ["run", "--workers", "0"], "grid.workers=0", None),
    ("workers-not-int", ["run", "--workers", "two"], "'two'", None),
    ("rounds-flag-0", ["run", "--rounds", "0"], "--rounds=0", None),
    ("set-without-equals", ["run", S, "lr"], "'lr'", None),
    ("unknown-key", ["run", S, "nonsense=1"], "'nonsense'", None),
    ("bad-address", ["run", "--scheduler", "notaurl"], "'notaurl'", None),
    ("report-round-negative", ["partition-report", "--round", "-1"], "--round=-1", None),
    ("certs-empty-hosts", ["certs", "{tmp}/certs", "--hosts", ","], "--hosts", None),
    ("prepare-unknown-source", ["prepare", "bogus"], "'bogus'", None),
    # -- config values --
    ("unknown-model", ["run", S, "model.name=resnet50"], "'resnet50'", None),
    ("unknown-source", ["run", S, "data.source=mnist"], "'mnist'", None),
    ("beta-above-1", ["run", S, "partition.distribution=balanced(1.5)"],
     "partition.distribution.beta=1.5", None),
    ("beta-below-0", ["run", S, "partition.distribution=balanced", S, "partition.distribution.beta=-0.1"],
     "partition.distribution.beta=-0.1", None),
    ("param-of-another-component", ["run", S, "partition.distribution.beta=0.5"],
     "'partition.distribution.beta': distribution iid takes no parameters", None),
    ("ambiguous-bare-key", ["run", S, "lr=0.1"], "training.lr, server.optimizer.lr", None),
    ("unknown-server-param", ["run", S, "server.optimizer.momentum=0.5"],
     "'server.optimizer.momentum': server optimizer fedavg takes parameters lr", None),
    ("negative-rounds", ["run", S, "training.rounds=-3"], "training.rounds=-3", None),
    ("zero-rounds", ["run", S, "training.rounds=0"], "training.rounds=0", None),
    ("alpha-0", ["run", S, "partition.distribution=dirichlet(0)"], "partition.distribution.alpha=0", None),
    ("bad-shorthand", ["run", S, "partition.forming=static(3)"], "static takes no parameters", None),
    ("unknown-model-kwarg", ["run", S, "model.kwargs.depth=3"], "'model.kwargs.depth': model vgg11 takes", None),
    ("lr-not-number", ["run", S, "training.lr=fast"], "'fast'", None),
    ("batch-0", ["run", S, "training.batch_size=0"], "training.batch_size=0", None),
    ("unknown-forming", ["run", S, "partition.forming=sometimes"], "'sometimes'", None),
    ("unknown-distribution", ["run", S, "partition.distribution=zipf"], "'zipf'", None),
    ("unknown-aggregator", ["run", S, "server.aggregator=bogus"], "'bogus'", None),
    ("unknown-attack", ["run", S, "faults.attack=bogus"], "'bogus'", None),
    ("unknown-data-mode", ["run", S, "data.mode=bogus"], "'bogus'", None),
    ("quorum-above-1", ["run", S, "grid.quorum=2"], "grid.quorum=2", None),
    ("negative-deadline", ["run", S, "grid.deadline_s=-1"], "grid.deadline_s=-1", None),
    ("clients-per-round-above-C", ["run", S, "training.clients_per_round=10"],
     "training.clients_per_round=10", None),
    ("C-above-D", ["run", S, "partition.num_clients=100000"], "partition.num_clients=100000", None),
    ("tls-dir-without-certs", ["run", S, "grid.tls_dir={tmp}/nocerts"], "nocerts", None),
    # -- config files --
    ("missing-config-file", ["run", "--config", "{tmp}/nonexistent.yaml"], "nonexistent.yaml", None),
    ("invalid-yaml", ["run", "--config", "{tmp}/bad.yaml"], "bad.yaml", _bad_yaml),
    ("config-not-a-mapping", ["run", "--config", "{tmp}/list.yaml"], "list", _list_yaml),
    ("config-unknown-key", ["run", "--config", "{tmp}/unk.yaml"], "epochz", _unknown_key_yaml),
    ("config-bad-value", ["run", "--config", "{tmp}/bad.json"], "partition.distribution.beta=7",
     _bad_value_json),
    ("config-legacy-bad-value", ["run", "--config", "{tmp}/old.json"],
     "partition.distribution.beta=7", _legacy_bad_value_json),
    ("config-binary-garbage", ["run", "--config", "{tmp}/bin.yaml"], "bin.yaml", _binary_config),
    # -- data --
    ("missing-archive", ["run", S, "data.source=cifar10", S, "data.path={tmp}/missing.tar.gz",
                         S, "data.data_dir={tmp}/dd"], "missing.tar.gz", None),
    ("truncated-archive", ["run", S, "data.source=cifar10",
                           S, "data.path={tmp}/cifar-10-binary.tar.gz", S, "data.data_dir={tmp}/dd"],
     "truncated", _truncated_cifar),
    ("corrupt-image", ["run", S, "data.source=textures", S, "data.path={tmp}/dtd-corrupt.zip",
                       S, "data.data_dir={tmp}/dd"], "banded_0002.jpg", _corrupt_textures),
    # -- checkpoints --
    ("resume-without-checkpoint", ["run", "--out", "{tmp}/empty", "--resume"], "no checkpoint", None),
    ("damaged-checkpoint", ["run", "--out", "{tmp}/out", "--resume"], "ckpt-000002.npz",
     _garbage_ckpt),
    ("checkpoint-wrong-checksum", ["run", "--out", "{tmp}/out", "--resume"], "sha256",
     _altered_ckpt),
    ("checkpoint-with-pickle", ["run", "--out", "{tmp}/out", "--resume"], "ckpt-000001.npz",
     _pickled_ckpt),
    # -- integer magnitudes beyond any sane run (explicit upper bounds, stated) --
    ("seed-30-digits", ["run", S, "seed=123456789012345678901234567890"], "[0, 4294967295]", None),
    ("rounds-1e12", ["run", S, "training.rounds=1000000000000"],
     "training.rounds=1000000000000 is invalid: an integer in [1, 100000]", None),
    ("local-epochs-1e12", ["run", S, "training.local_epochs=1000000000000"], "[1, 10000]", None),
    ("batch-1e12", ["run", S, "training.batch_size=1000000000000"], "[1, 1000000]", None),
    ("rounds-flag-1e12", ["run", "--rounds", "1000000000000"], "--rounds=1000000000000", None),
    ("report-round-1e12", ["partition-report", "--round", "1000000000000"], "[1, 100000]", None),
    ("rounds-400-digits-yaml", ["run", "--config", "{tmp}/big.yaml"],
     "training.rounds=99999", _big_yaml("training", "rounds")),
    ("local-epochs-400-digits-yaml", ["run", "--config", "{tmp}/big.yaml"],
     "…(400 characters) is invalid", _big_yaml("training", "local_epochs")),
    ("clients-400-digits-yaml", ["run", "--config", "{tmp}/big.yaml"],
     "partition.num_clients=9999", _big_yaml("partition", "num_clients")),
    ("lr-400-digits-yaml", ["run", "--config", "{tmp}/big.yaml"], "a finite number",
     _big_yaml("training", "lr")),
    ("deadline-overflow-yaml", ["run", "--config", "{tmp}/big.yaml"], "grid.deadline_s=inf",
     _big_yaml("grid", "deadline_s", "1.0e+400")),
    ("wait-for-workers-1e12", ["run", S, "grid.wait_for_workers_s=1.0e+12"], "604800", None),
    # -- a damaged prepared array_record file --
    ("array-record-truncated-small", ARRAY_RECORD, "cannot be read",
     _damaged_array_record("truncated-small")),
    ("array-record-truncated-half", ARRAY_RECORD, "cannot be read",
     _damaged_array_record("truncated-half")),
    ("array-record-empty", ARRAY_RECORD, "cannot be read", _damaged_array_record("empty")),
    ("array-record-garbage", ARRAY_RECORD, "cannot be read", _damaged_array_record("garbage")),
    # -- tls:// without certificates --
    ("tls-flag-without-certs", ["run", "--scheduler", "tls://127.0.0.1:9"],
     "uses TLS but no certificates", None),
    ("tls-set-without-certs", ["run", S, "grid.scheduler=tls://10.0.0.5:8786"],
     "'tls://10.0.0.5:8786' uses TLS", None),
    ("tls-yaml-without-certs", ["run", "--config", "{tmp}/tls.yaml"], "grid.tls_dir", _tls_yaml),
    # -- partition-report --out on a file --
    ("report-out-is-file", ["partition-report", "--out", "{tmp}/afile"], "is a file", _a_file),
    ("report-out-under-file", ["partition-report", "--out", "{tmp}/afile/sub"], "which is a file",
     _a_file),
    # -- certificates for names that are not host names or IP addresses --
    ("certs-host-space", ["certs", "{tmp}/c", "--hosts", "my host"], "'my host'", None),
    ("certs-host-control", ["certs", "{tmp}/c", "--hosts", "bad\x01host"], "'bad\\x01host'", None),
    ("certs-host-dotdot", ["certs", "{tmp}/c", "--hosts", "localhost,.."], "'..'", None),
    ("certs-host-star", ["certs", "{tmp}/c", "--hosts", "*"], "'*'", None),
    ("certs-host-wildcard", ["certs", "{tmp}/c", "--hosts", "*.example.org"], "'*.example.org'", None),
    ("certs-host-hyphen", ["certs", "{tmp}/c", "--hosts=-node"], "'-node'", None),
    ("certs-host-too-long", ["certs", "{tmp}/c", "--hosts", "a" * 300], "…(300 characters)", None),
    # -- YAML alias-expansion bombs inside an option mapping (must not hang) --
    ("yaml-bomb-model-kwargs", ["run", "--config", "{tmp}/bomb.yaml"], "aliases", _bomb("model")),
    ("yaml-bomb-data-options", ["run", "--config", "{tmp}/bomb.yaml"], "aliases", _bomb("options")),
    ("yaml-self-reference", ["run", "--config", "{tmp}/bomb.yaml"], "once aliases are expanded",
     _bomb("loop")),
    ("yaml-bomb-inline-set", ["run", S, _INLINE_BOMB], "once aliases are expanded", None),
    # -- messages that named the wrong cause --
    ("out-is-a-file", ["run", "--out", "{tmp}/afile"], "is a file", _a_file),
    ("out-under-a-file", ["run", "--out", "{tmp}/afile/run"], "which is a file", _a_file),
    ("config-dev-null", ["run", "--config", "/dev/null"], "is not a regular file", None),
    ("config-directory", ["run", "--config", "{tmp}/cfgdir"], "is a directory", _a_dir),
    ("long-model-name", ["run", S, f"model.name={LONG}"], "…(100000 characters)", None),
    ("long-preset-name", ["run", "--preset", LONG], "…(100000 characters)", None),
    ("long-unknown-key", ["run", S, f"{LONG}=1"], "…(100000 characters)", None),
    ("long-scheduler", ["run", "--scheduler", LONG], "…(100000 characters)", None),
    ("long-unknown-flag", ["run", f"--{LONG}"], "…(100002 characters)", None),
]

def _nul_name_yaml(tmp):
    (tmp / "nul.yaml").write_text('name: "run\\0x"\n')


def _escape_name_yaml(tmp):
    (tmp / "esc.yaml").write_text("name: ../../../escaped\nout_dir: null\n")


CASES += [
    # -- names and paths (issue 25): never a folder outside the one chosen, never a traceback --
    ("name-nul", ["run", S, 'name="a\\0b"'], "name='a\\x00b' is refused (it holds the control", None),
    ("name-nul-yaml", ["run", "--config", "{tmp}/nul.yaml"], "control character", _nul_name_yaml),
    ("name-dotdot", ["run", S, "name=../../escaped"], "path separator", None),
    ("name-dotdot-yaml", ["run", "--config", "{tmp}/esc.yaml"], "'../../../escaped' is refused",
     _escape_name_yaml),
    ("name-absolute", ["run", S, "name={tmp}/../abs"], "path separator", None),
    ("name-parent", ["run", S, "name=.."], "names a parent", None),
    ("name-backslash", ["run", S, "name=a\\b"], "path separator", None),
    ("name-newline", ["run", S, 'name="a\\nb"'], "control character '\\n'", None),
    ("name-bidi-override", ["run", S, "name=abc\u202edcba"], "control character", None),
    ("name-too-long", ["run", S, f"name={'n' * 101}"], "longer than 100", None),
    ("name-empty", ["run", S, 'name=""'], "it is empty", None),
    ("out-nul", ["run", "--out", "{tmp}/o\x00ut"], "--out='", None),
    ("out-escape", ["run", "--out", "{tmp}/o\x1b[2Jut"], "control character '\\x1b'", None),
    # an unassigned code point (hypothesis found it) and a no-break space print as something else
    ("out-unassigned", ["run", "--out", "{tmp}/o\U00018cd6"], "unprintable character '\\U00018cd6'", None),
    ("name-no-break-space", ["run", S, "name=a\u00a0b"], "unprintable character '\\xa0'", None),
    ("out-empty", ["run", "--out", ""], "--out='' is refused (it is empty)", None),
    ("out-dir-nul", ["run", S, 'out_dir="o\\0"'], "out_dir='o\\x00' is refused", None),
    ("data-path-nul", ["run", S, 'data.path="p\\0"'], "data.path=", None),
    ("data-dir-nul", ["run", S, 'data.data_dir="d\\0"'], "data.data_dir=", None),
    ("local-directory-nul", ["run", S, 'grid.local_directory="l\\0"'], "grid.local_directory=", None),
    ("cache-dir-nul", ["run", S, 'grid.compile_cache_dir="c\\0"'], "grid.compile_cache_dir=", None),
    ("tls-dir-nul", ["run", S, 'grid.tls_dir="t\\0"'], "grid.tls_dir=", None),
    ("config-nul", ["run", "--config", "{tmp}/c\x00.yaml"], "--config=", None),
    ("report-out-nul", ["partition-report", "--out", "{tmp}/r\x00"], "--out=", None),
    ("certs-dir-nul", ["certs", "{tmp}/c\x00"], "certs DIRECTORY=", None),
    ("prepare-data-dir-nul", ["prepare", "digits", "--data-dir", "{tmp}/d\x00"], "--data-dir=", None),
]

def _doc(text):
    def setup(tmp):
        (tmp / "doc.yaml").write_text(text)
    return setup


DUP_FILE = "name: x\ntraining:\n  rounds: 3\n  lr: 0.1\n  rounds: 4\n"
DUP_KWARGS = "model:\n  name: vgg11\n  kwargs:\n    width: 0.25\n    norm: batch\n    width: 0.5\n"
DUP_CHOICE = "server:\n  codec: {name: quant, bits: 3, bits: 4}\n"
DOC = ["run", "--config", "{tmp}/doc.yaml"]

CASES += [
    # -- config documents that are not a mapping, keys given twice (issue 25): file and line --
    ("config-empty", DOC, "doc.yaml' is empty", _doc("")),
    ("config-only-comments", DOC, "doc.yaml' is empty", _doc("# nothing here\n\n")),
    ("config-boolean", DOC, "doc.yaml' line 1: the document is a boolean", _doc("true\n")),
    ("config-number", DOC, "doc.yaml' line 2: the document is a number", _doc("\n42\n")),
    ("config-null", DOC, "line 1: the document is null", _doc("null\n")),
    ("config-string", DOC, "line 1: the document is a string", _doc("rounds=3\n")),
    ("config-list-line", DOC, "line 1: the document is a list", _doc("[training, server]\n")),
    ("config-duplicate-key", DOC, "doc.yaml' line 5: key 'rounds' is given twice (first on line 3)",
     _doc(DUP_FILE)),
    ("config-duplicate-json", DOC, "line 1: key 'rounds' is given twice",
     _doc('{"training": {"rounds": 3, "rounds": 4}}')),
    ("config-duplicate-section", DOC, "line 3: key 'training' is given twice",
     _doc("training: {rounds: 3}\nseed: 1\ntraining: {lr: 0.1}\n")),
    ("config-duplicate-kwarg", DOC, "line 6: key 'width' is given twice", _doc(DUP_KWARGS)),
    ("config-duplicate-codec-param", DOC, "line 2: key 'bits' is given twice", _doc(DUP_CHOICE)),
    ("set-twice", ["run", S, "training.lr=0.1", S, "training.lr=0.2"],
     "'training.lr' is given twice (--set training.lr=0.1 and --set training.lr=0.2)", None),
    ("set-bare-and-dotted", ["run", S, "rounds=3", S, "training.rounds=4"],
     "'training.rounds' is given twice", None),
    ("set-and-workers-flag", ["run", "--workers", "2", S, "grid.workers=3"],
     "'grid.workers' is given twice (--workers 2 and --set grid.workers=3)", None),
    ("set-and-scheduler-flag", ["run", "--scheduler", "tcp://127.0.0.1:9", S,
                                "grid.scheduler=tcp://127.0.0.1:8"], "--scheduler tcp://127.0.0.1:9", None),
    ("show-config-set-twice", ["show-config", S, "seed=1", S, "seed=2"], "'seed' is given twice", None),
    ("set-mapping-duplicate", ["run", S, "model.kwargs={width: 0.25, width: 0.5}"],
     "--set 'model.kwargs': key 'width' is given twice", None),
    ("codec-param-twice", ["run", S, "server.codec=quant(bits=3, bits=4)"],
     "parameter bits is given twice", None),
    ("choice-positional-and-keyword", ["run", S, "partition.distribution=stratified(0.9, share=0.8)"],
     "parameter share is given twice", None),
]

ASYNC = [S, "server.mode=async"]

CASES += [
    # -- counts, sizes and durations a run could never satisfy (issue 25): refused up front --
    ("async-concurrency-beyond-clients", ["run", *ASYNC, S, "server.concurrency=1000000"],
     "server.concurrency=1000000 is invalid: an integer in [1, 4] is required (at most one task", None),
    ("async-buffer-beyond-concurrency", ["run", *ASYNC, S, "server.concurrency=2", S,
                                         "server.buffer_size=3"], "never fills", None),
    ("async-buffer-beyond-default-concurrency", ["run", *ASYNC, S, "server.buffer_size=5"],
     "server.buffer_size=5 is invalid: an integer in [1, 4]", None),
    ("overcommit-beyond-clients", ["run", S, "training.clients_per_round=3", S, "grid.overcommit=2"],
     "grid.overcommit=2 is invalid: an integer in [0, 1]", None),
    ("batch-beyond-local-sets", ["run", S, "training.batch_size=100000"],
     "training.batch_size=100000 is invalid: an integer in [1, 359] is required (the largest local",
     None),
    ("deadline-below-a-second", ["run", S, "grid.deadline_s=0.001"], "grid.deadline_s=0.001", None),
    ("connect-timeout-tiny", ["run", S, "grid.connect_timeout_s=1.0e-9"], "[1, 604800]", None),
    ("workers-beyond-memory", ["run", "--workers", "256"], "grid.workers=256 is invalid on this machine",
     None),
    ("model-width-huge", ["run", S, "model.kwargs.width=1000"], "model.kwargs.width=1000", None),
    ("mobilenet-width-huge", ["run", S, "model.name=mobilenet_v3_small", S,
                              "model.kwargs={width_multiplier: 64}"], "(0, 4]", None),
    ("link-bandwidth-tiny", ["run", S, "faults.link=home(up_mbit=1.0e-9)"], "faults.link.up_mbit=1e-09", None),
    ("link-latency-huge", ["run", S, "faults.link=wifi(latency_ms_max=1.0e+12)"], "[0, 60000]", None),
    ("link-spread-huge", ["run", S, "faults.link=home(spread=1.0e+9)"], "faults.link.spread=1000000000", None),
    ("codec-block-huge", ["run", S, "server.codec=quant(block=100000000000000000000)"],
     "[0, 2147483647]", None),
    ("codec-raw-below-huge", ["run", S, "server.codec=int8(raw_below=1000000000000000000000000000000)"],
     "[0, 2147483647]", None),
    ("fragments-stride-1", ["run", S, "data.source=texture_fragments", S, "data.options={stride: 1}"],
     "data.options.stride=1", None),
    ("fragments-cache-huge", ["run", S, "data.source=texture_fragments", S,
                              "data.options={cache_images: 1000000000}"], "[0, 1024]", None),
]

COMPLETE_LOOKING = ("rounds.csv", "tasks.csv", "rounds.parquet", "config.json",
                    "global_accuracy.png")


@pytest.mark.parametrize("case_id,argv,expected,setup", CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2(case_id, argv, expected, setup, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"   # the command's folder; tmp_path around it must stay as it is
    work.mkdir()
    monkeypatch.chdir(work)
    if setup is not None:
        setup(tmp_path)
        capsys.readouterr()  # what the set-up itself logged is not the command's output
    outside = sorted(p.name for p in tmp_path.parent.iterdir())
    before = {p for p in tmp_path.rglob("*")}
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    t = time.time()
    code = main(argv)
    elapsed = time.time() - t
    err = capsys.readouterr().err
    assert code == 2, err[:3000]
    assert err.startswith("error: ") and err.count("\n") == 1, err[:3000]
    assert "Traceback" not in err
    assert len(err) < 700, err[:3000]  # long values are shortened, never echoed whole
    assert within(elapsed, 30), elapsed  # nothing hangs (alias bombs, huge numbers)
    assert expected in err, err
    # Nothing left that looks like a complete (or any) run.
    for p in set(tmp_path.rglob("*")) - before:
        assert p.name not in COMPLETE_LOOKING and not p.name.startswith("ckpt-"), p
    assert not (tmp_path / "UNPICKLED").exists()  # a pickled checkpoint was never unpickled
    # Nothing written beside the test's folder (a name or path escaping with '..', '/').
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == outside


# suite budget (~8 s, a CLI process): the same refusal, its exit code 2 and the untouched
# folder stay in the default run in-process (test_a_failed_start_leaves_the_output_folder_...)
@pytest.mark.slow
def test_unreachable_scheduler_is_one_line_no_output(tmp_path):
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "fedjax_grid.cli", "run", "--scheduler",
                        "tcp://127.0.0.1:9", S, "grid.connect_timeout_s=2", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("error: cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "OSError" not in r.stderr and "allowed:" in r.stderr
    assert not (out / "rounds.csv").exists() and not (out / "checkpoints").exists()


def _interrupt_when(tmp_path, ready):
    """Start a LocalCluster CLI run in its own process group; send SIGINT to the whole
    group (as Ctrl-C in a terminal does) once ``ready(out)``; return (code, stderr)."""
    out = tmp_path / "o"
    # As in a terminal, the CLI must start with SIGINT's default disposition, even when
    # this suite runs as a background job (SIGINT ignored, inherited across exec): a
    # caught signal is reset to its default by exec, an ignored one is not.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedjax_grid.cli", "run", "--workers", "1", "--out", str(out),
         "--quiet", "--no-plots", S, "training.rounds=50", S, "data.max_test_examples=256",
         S, "model.kwargs={width: 0.125, norm: batch, head: cifar}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    signal.signal(signal.SIGINT, old)
    try:
        end = time.time() + 240
        while time.time() < end and proc.poll() is None and not ready(out):
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err


def test_ctrl_c_during_a_local_cluster_run_is_one_line(tmp_path):
    """SIGINT to the CLI's process group mid-run: one line, exit 130, no traceback anywhere
    (the LocalCluster's worker processes ignore it), the checkpoint stays resumable."""
    code, err = _interrupt_when(tmp_path, lambda out: any((out / "checkpoints").glob("ckpt-*")))
    # warnings said on the way (a slow worker start on a loaded machine) are not the interrupt
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith("warning: ")]
    assert code == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("interrupted after round "), lines
    assert "--resume" in lines[0]


def test_table_is_complete():
    assert len(CASES) + 1 >= 70


# -------------------------------------------------------------- a failed start leaves nothing

def _tree(root: pathlib.Path) -> dict:
    """relative path -> file bytes (None for a folder): everything under ``root``."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("layout", ["fresh", "nested", "existing"])
def test_a_failed_start_leaves_the_output_folder_as_it_found_it(layout, tmp_path, capsys):
    """`run --scheduler tcp://127.0.0.1:<closed port> --out DIR` (issue 25): no lock file,
    no dask/ scratch folder, no created parents; an existing folder byte-identical."""
    from tests.faults.conftest import free_port
    out = {"fresh": tmp_path / "fresh", "nested": tmp_path / "a" / "b" / "run",
           "existing": tmp_path / "existing"}[layout]
    if layout == "existing":
        (out / "sub").mkdir(parents=True)
        (out / "notes.txt").write_text("mine")
    before = _tree(tmp_path)
    code = main(["run", "--scheduler", f"tcp://127.0.0.1:{free_port()}", "--out", str(out),
                 S, "grid.connect_timeout_s=1"])
    cap = capsys.readouterr()
    assert code == 2 and cap.err.startswith("error: cannot reach the Dask scheduler"), cap.err
    assert _tree(tmp_path) == before
    # refused before the data load and the step estimate (which compiles the model)
    assert "estimate" not in cap.out and "loading" not in cap.out, cap.out


def test_a_failed_start_of_a_notebook_run_leaves_nothing(tmp_path):
    """The same without the CLI: FederatedRun(cfg) refuses a port nobody listens on before
    it reads anything; a scheduler gone between the run's creation and start() (a port
    that listened, then closed): start() fails, close() puts the folder back (the run
    folder lock removes its own file and folders); a LocalCluster that cannot start
    removes the scratch folder it created."""
    import socket
    from fedjax_grid.errors import UserError
    from fedjax_grid.grid.cluster import open_cluster
    from fedjax_grid.runner import FederatedRun
    from tests.faults.conftest import free_port
    from tests.grid.conftest import tiny_config
    port = free_port()
    cfg = tiny_config(**{"grid.scheduler": f"tcp://127.0.0.1:{port}",
                         "grid.connect_timeout_s": 1, "training.rounds": 1})
    stages = []
    with pytest.raises(UserError, match="cannot reach"):
        FederatedRun(cfg, out_dir=tmp_path / "nb" / "run", on_stage=stages.append)
    assert stages == [] and list(tmp_path.iterdir()) == []  # no data load, nothing written
    with socket.socket() as listener:  # something listens while the run is made ...
        listener.bind(("127.0.0.1", port))
        listener.listen()
        run = FederatedRun(cfg, out_dir=tmp_path / "nb" / "run")
    with pytest.raises(UserError, match="cannot reach"):  # ... and is gone at its start
        run.start()
    run.close()
    assert list(tmp_path.iterdir()) == []
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: binding fails at once, locally.
    bad = tiny_config(**{"grid.host": "192.0.2.1", "grid.allow_insecure": "true",
                         "grid.workers": 1}).grid
    with pytest.raises(UserError, match="cannot start a LocalCluster"):
        open_cluster(bad, local_directory=str(tmp_path / "scratch" / "dask"))
    assert list(tmp_path.iterdir()) == []
