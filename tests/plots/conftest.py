"""Fixtures of tests/plots: the records tables of plots_records, per run and concatenated."""
import numpy as np
import pandas as pd
import pytest

from plots_records import RUNS, simulate_run


@pytest.fixture
def run_tables():
    """{run: (rounds, tasks)} for the three runs."""
    return {name: simulate_run(seed) for seed, name in enumerate(RUNS)}


@pytest.fixture
def rounds_one(run_tables):
    return run_tables[RUNS[0]][0]


@pytest.fixture
def tasks_one(run_tables):
    return run_tables[RUNS[0]][1]


@pytest.fixture
def rounds_all(run_tables):
    return pd.concat([r.assign(run=name) for name, (r, _) in run_tables.items()],
                     ignore_index=True)


@pytest.fixture
def tasks_all(run_tables):
    return pd.concat([t.assign(run=name) for name, (_, t) in run_tables.items()],
                     ignore_index=True)


@pytest.fixture
def label_table():
    """Tidy (client, class, count) for 4 clients x 10 classes, non-IID (some zeros)."""
    rng = np.random.default_rng(0)
    rows = []
    for client in range(4):
        for cls in range(10):
            if (cls + client) % 3 == 0:
                continue  # pair absent: the heatmap must show 0
            rows.append({"client": client, "class": cls, "count": int(rng.integers(1, 60))})
    return pd.DataFrame(rows, columns=["client", "class", "count"])

