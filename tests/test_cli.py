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
    for name in ("partition.distribution:", "stratified(share=0.8, classes_per_client=None)",
                 "server.optimizer:", "fedadam(lr=0.01, b1=0.9, b2=0.99, eps=0.001)"):
        assert name in out, name   # the registries' choices with their own defaults
    assert main(["show-config", "--preset", "paper-vgg16-cifar10-balanced",
                 "--set", "training.lr=0.02", "--set", "server.optimizer=fedadam"]) == 0
    shown = capsys.readouterr().out
    assert "num_clients: 50" in shown and "lr: 0.02" in shown
    assert "distribution:  # one of: iid, balanced, stratified" in shown
    assert "name: stratified" in shown and "share: 0.8" in shown
    assert "name: fedadam" in shown and "lr: 0.01" in shown and "b2: 0.99" in shown
    # a bare key held by several sections is refused, naming them
    assert main(["show-config", "--set", "lr=0.02"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "training.lr, server.optimizer.lr" in err
    assert main(["show-config", "--set", "rounds=3", "--set", "share=0.9",
                 "--set", "partition.distribution=stratified"]) == 2  # share before stratified
    assert main(["show-config", "--set", "partition.distribution=stratified",
                 "--set", "share=0.9", "--set", "rounds=3"]) == 0
    shown = capsys.readouterr().out
    assert "share: 0.9" in shown and "rounds: 3" in shown


def test_help_lists_the_registries_choices(capsys):
    import pytest
    for command in ("run", "show-config", "partition-report"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        for text in ("partition.forming:", "hybrid(keep=0.5)", "server.aggregator:",
                     "trimmed_mean(trim_fraction=0.1)", "faults.attack:", "model.name, parameters in model.kwargs:"):
            assert text in out, (command, text)


def test_partition_report_writes_table_and_heatmap(tmp_path, capsys):
    assert main(["partition-report", "--set", "partition.distribution=balanced(0.9)", "--out", str(tmp_path)]) == 0
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
