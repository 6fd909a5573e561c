"""The complete bad-input table: CLI flags, config files, data, checkpoints, addresses.

Each case must give exactly one stderr line ``error: ...`` naming the bad value, exit
code 2, no traceback, and leave no output that looks like a complete run (no
rounds.csv, tasks.csv, config.json or checkpoint in the output folder).
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from fedjax_grid.cli import main
from tests.faults.conftest import write_pickled_npz
from tests.conftest import SHARED_DATA

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
    (tmp / "bad.json").write_text(json.dumps({"partition": {"beta": 7}}))


def _binary_config(tmp):
    (tmp / "bin.yaml").write_bytes(b"\xff\xfe\x00\x81garbage")


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
    ("beta-above-1", ["run", S, "partition.beta=1.5"], "partition.beta=1.5", None),
    ("beta-below-0", ["run", S, "partition.beta=-0.1"], "partition.beta=-0.1", None),
    ("negative-rounds", ["run", S, "training.rounds=-3"], "training.rounds=-3", None),
    ("zero-rounds", ["run", S, "training.rounds=0"], "training.rounds=0", None),
    ("alpha-0", ["run", S, "partition.alpha=0"], "partition.alpha=0", None),
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
    ("config-bad-value", ["run", "--config", "{tmp}/bad.json"], "partition.beta=7", _bad_value_json),
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
]

COMPLETE_LOOKING = ("rounds.csv", "tasks.csv", "rounds.parquet", "config.json",
                    "global_accuracy.png")


@pytest.mark.parametrize("case_id,argv,expected,setup", CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2(case_id, argv, expected, setup, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        setup(tmp_path)
    before = {p for p in tmp_path.rglob("*")}
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert expected in err, err
    # Nothing left that looks like a complete (or any) run.
    for p in set(tmp_path.rglob("*")) - before:
        assert p.name not in COMPLETE_LOOKING and not p.name.startswith("ckpt-"), p
    assert not (tmp_path / "UNPICKLED").exists()  # a pickled checkpoint was never unpickled


def test_unreachable_scheduler_is_one_line_no_output(tmp_path):
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "fedjax_grid.cli", "run", "--scheduler",
                        "tcp://127.0.0.1:9", S, "grid.connect_timeout_s=2", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("error: cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not (out / "rounds.csv").exists() and not (out / "checkpoints").exists()


def test_table_is_complete():
    assert len(CASES) + 1 >= 30
