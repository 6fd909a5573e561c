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

