"""The fedjax-grid CLI's listing and report commands.

Bad input (one line, exit 2, nothing written) is tested by the table in tests/faults/test_bad_inputs.py.
"""
from fedjax_grid.cli import main


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
    assert "num_clients: 50" in shown and "lr: 0.02" in shown and "distribution: stratified" in shown
    assert "share: 0.8" in shown


def test_partition_report_writes_table_and_heatmap(tmp_path, capsys):
    assert main(["partition-report", "--set", "partition.distribution=balanced",
                 "--set", "partition.beta=0.9", "--out", str(tmp_path)]) == 0
    import pandas as pd
    table = pd.read_csv(tmp_path / "partition.csv")
    assert set(table.columns) >= {"client", "class", "count"}
    assert table["client"].nunique() == 4
    assert (tmp_path / "partition.png").stat().st_size > 1000



def test_version_names_the_versions_a_grid_must_share(capsys):
    import pytest
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    from fedjax_grid import __version__
    assert out.startswith(f"fedjax-grid {__version__} (python ") and out.count("\n") == 1
    for dist in ("jax ", "flax ", "distributed "):
        assert dist in out


def test_run_help_has_examples_defaults_and_explains_more_rounds(capsys):
    import pytest
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("quickstart", "runs/<name>/<YYYYmmdd-HHMMSS>", "runs/<name>/latest", "examples:",
                 "fedjax-grid run --resume --out runs/vgg", "--more-rounds N",
                 "stop after N more rounds", "training.rounds", "rounds are counted from 1"):
        assert text in out, text
    assert "--rounds " not in out  # the old name still works but is not advertised


def test_more_rounds_and_its_old_name_are_checked(capsys):
    for argv, text in ((["run", "--more-rounds", "0"], "--more-rounds=0"),
                       (["run", "--rounds", "-2"], "--rounds=-2"),
                       (["run", "--rounds", "1", "--more-rounds", "1"], "old name")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and text in err, err


def test_resume_without_a_run_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume: no run of 'quickstart'") and err.count("\n") == 1
    assert "--out DIR" in err
