"""label_distribution: clients x classes heatmap from a tidy (client, class, count) table."""
import numpy as np
import pandas as pd
import pytest

from plots_records import assert_png
from fedjax_grid import plots
from fedjax_grid.errors import UserError


def test_heatmap_counts(label_table, tmp_path):
    fig = plots.label_distribution(label_table, save=tmp_path / "labels.png")
    assert_png(tmp_path / "labels.png")
    assert len(fig.axes) == 2                       # heatmap + colour bar
    ax = fig.axes[0]
    assert ax.get_xlabel() == "class" and ax.get_ylabel() == "client"
    mesh = ax.collections[0]
    values = np.asarray(mesh.get_array()).reshape(4, 10)
    matrix = plots.label_matrix(label_table)
    np.testing.assert_array_equal(values, matrix.to_numpy())
    # absent (client, class) pairs are zero cells; totals are preserved
    assert (values == 0).sum() == 4 * 10 - len(label_table)
    assert values.sum() == label_table["count"].sum()
    assert len(ax.texts) == 40                       # annotated (40 <= 160 cells)


def test_normalized_rows_sum_to_one_and_class_names(label_table):
    names = [f"cls{i}" for i in range(10)]
    fig = plots.label_distribution(label_table, normalize=True, class_names=names,
                                   annot=False)
    ax = fig.axes[0]
    values = np.asarray(ax.collections[0].get_array()).reshape(4, 10)
    np.testing.assert_allclose(values.sum(axis=1), 1.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert len(ax.texts) == 0
    assert "fraction" in fig.axes[1].get_ylabel()


def test_round_column_selects_one_round(label_table):
    table = pd.concat([label_table.assign(round=1),
                       label_table.assign(round=2, count=label_table["count"] * 2)])
    with pytest.raises(UserError, match="pick one with round="):
        plots.label_distribution(table)
    m2 = plots.label_matrix(table, round=2)
    assert m2.to_numpy().sum() == 2 * label_table["count"].sum()
    with pytest.raises(UserError, match="round=7 not in"):
        plots.label_matrix(table, round=7)


def test_many_clients_not_annotated():
    rng = np.random.default_rng(1)
    table = pd.DataFrame([(c, k, int(rng.integers(0, 9))) for c in range(30)
                          for k in range(20)], columns=["client", "class", "count"])
    fig = plots.label_distribution(table)
    assert len(fig.axes[0].texts) == 0


@pytest.mark.parametrize("mutate, match", [
    (lambda t: t.iloc[:0], "label table is empty"),
    (lambda t: t.rename(columns={"count": "n"}), "lacks column.*count"),
    (lambda t: t.assign(count=-1), "non-negative"),
])
def test_bad_tables(label_table, mutate, match):
    with pytest.raises(UserError, match=match):
        plots.label_distribution(mutate(label_table))


def test_too_few_class_names(label_table):
    with pytest.raises(UserError, match="class_names has 3 entries"):
        plots.label_distribution(label_table, class_names=["a", "b", "c"])


@pytest.mark.parametrize("names", [None, ["airplane", "car", "bird", "cat", "deer"]])
def test_partition_report_label_table(names, tmp_path):
    """The table of partition.report.label_table (int classes or categorical names)."""
    from fedjax_grid.partition.report import label_table
    labels = np.random.default_rng(0).integers(0, 5, 300)
    assignments = [np.arange(0, 50), np.arange(50, 180), np.arange(180, 300)]
    table = label_table(labels, assignments, class_names=names)
    fig = plots.label_distribution(table, save=tmp_path / "lt.png")
    assert_png(tmp_path / "lt.png")
    ax = fig.axes[0]
    values = np.asarray(ax.collections[0].get_array()).reshape(3, 5)
    np.testing.assert_array_equal(values.sum(axis=1), [50, 130, 120])
    np.testing.assert_array_equal(values[0], np.bincount(labels[:50], minlength=5))
    expected = names if names is not None else [str(i) for i in range(5)]
    assert [t.get_text() for t in ax.get_xticklabels()] == expected
