"""Label table sums and the heatmap figure (``plots.label_distribution``) of it."""
import matplotlib
import numpy as np
from matplotlib.collections import QuadMesh

from fedjax_grid.partition.distributions import distribute
from fedjax_grid.partition.report import label_table
from fedjax_grid.plots import label_distribution, label_matrix


def test_label_table_is_tidy_and_sums():
    labels = np.array([0, 0, 1, 2, 2, 2, 1, 0, 3, 3])
    assignments = [np.array([0, 1, 2]), np.array([3, 4]), np.array([], dtype=np.int64)]
    table = label_table(labels, assignments)
    assert list(table.columns) == ["client", "class", "count"]
    assert len(table) == 3 * 4  # every (client, class) pair, zeros included
    assert table["count"].sum() == 5
    per_client = table.groupby("client")["count"].sum().tolist()
    assert per_client == [3, 2, 0]
    row = table[(table.client == 0) & (table["class"] == 0)]
    assert int(row["count"].iloc[0]) == 2
    named = label_table(labels, assignments, class_names=["a", "b", "c", "d", "e"])
    assert len(named) == 3 * 5 and list(named["class"].cat.categories) == list("abcde")


def test_label_table_matches_partition():
    labels = np.arange(300) % 6
    assignments = distribute(labels, 5, "balanced(0.9)", 0)
    table = label_table(labels, assignments)
    assert table["count"].sum() == sum(len(a) for a in assignments)
    mat = label_matrix(table, normalize=True)
    assert np.allclose(mat.sum(axis=1), 1.0)


def test_heatmap_saves_png(tmp_path):
    assert matplotlib.get_backend()  # works without pyplot
    labels = np.arange(200) % 10
    table = label_table(labels, distribute(labels, 8, "dirichlet(0.3)", 0),
                        class_names=[f"c{i}" for i in range(10)])
    fig = label_distribution(table, normalize=True)
    path = tmp_path / "labels.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    main = fig.axes[0]
    assert sum(isinstance(c, QuadMesh) for c in main.collections) == 1
    mesh = next(c for c in main.collections if isinstance(c, QuadMesh))
    assert mesh.get_array().size == 8 * 10
    assert [t.get_text() for t in main.get_xticklabels()][:2] == ["c0", "c1"]
