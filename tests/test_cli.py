"""The fedjax-grid CLI: bad input gives one line and exit code 2; presets list; show-config."""
import subprocess
import sys

import pytest

from fedjax_grid.cli import main


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fedjax_grid.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


BAD = [
    (["run", "--preset", "nope"], "unknown preset 'nope'"),
    (["run", "--set", "model.name=resnet50"], "model.name='resnet50'"),
    (["run", "--set", "data.source=mnist"], "data.source='mnist'"),
    (["run", "--set", "partition.beta=1.5"], "partition.beta=1.5"),
    (["run", "--set", "training.rounds=-3"], "training.rounds=-3"),
    (["run", "--set", "partition.alpha=0"], "partition.alpha=0"),
    (["run", "--set", "nonsense=1"], "unknown config key 'nonsense'"),
    (["run", "--set", "lr"], "not of the form key=value"),
    (["run", "--set", "training.lr=fast"], "training.lr='fast'"),
    (["run", "--config", "/nonexistent/cfg.yaml"], "does not exist"),
    (["run", "--workers", "0"], "grid.workers=0"),
    (["run", "--set", "partition.forming=sometimes"], "partition.forming='sometimes'"),
    (["run", "--set", "grid.quorum=2"], "grid.quorum=2"),
    (["run", "--bogus-flag"], "unrecognized arguments"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("argv,expected", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing written for a rejected config


def test_bad_config_file(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("training: {rounds: [1, 2}\n")
    assert main(["run", "--config", str(f)]) == 2
    assert "not valid JSON/YAML" in capsys.readouterr().err


def test_num_clients_above_dataset_size(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--set", "partition.num_clients=100000"]) == 2
    assert "exceeds the" in capsys.readouterr().err


def test_unreachable_scheduler_is_one_line(tmp_path):
    r = run_cli("run", "--scheduler", "tcp://127.0.0.1:9", "--set", "grid.connect_timeout_s=2",
                "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert r.stderr.startswith("error: cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'")
    assert "Traceback" not in r.stderr


def test_presets_and_show_config(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("quickstart", "paper-vgg16-cifar10-independent", "paper-vgg16-cifar10-balanced",
                 "paper-mobilenetv3-tinyimagenet-independent",
                 "paper-mobilenetv3-tinyimagenet-balanced"):
        assert name in out
    assert main(["show-config", "--preset", "paper-vgg16-cifar10-balanced",
                 "--set", "lr=0.02"]) == 0
    shown = capsys.readouterr().out
    assert "num_clients: 50" in shown and "lr: 0.02" in shown and "distribution: balanced" in shown


def test_partition_report_writes_table_and_heatmap(tmp_path, capsys):
    assert main(["partition-report", "--set", "partition.distribution=balanced",
                 "--set", "partition.beta=0.9", "--out", str(tmp_path)]) == 0
    import pandas as pd
    table = pd.read_csv(tmp_path / "partition.csv")
    assert set(table.columns) >= {"client", "class", "count"}
    assert table["client"].nunique() == 4
    assert (tmp_path / "partition.png").stat().st_size > 1000


def test_damaged_checkpoint_is_reported_not_loaded(tmp_path, capsys):
    ckpt = tmp_path / "run" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "ckpt-000002.npz").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    assert main(["run", "--out", str(tmp_path / "run"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "ckpt-000002.npz" in err and err.count("\n") == 1


def test_resume_without_checkpoint(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
