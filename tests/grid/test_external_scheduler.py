"""An experiment through `fedjax-grid run --scheduler` on separately started
`dask scheduler` and `dask worker` processes (127.0.0.1 only)."""
import subprocess
import sys

import pandas as pd
import pytest

from tests.faults.conftest import ExternalGrid


@pytest.fixture
def external_grid(tmp_path):
    """A `dask scheduler` and two `dask worker` processes; stopped by PID afterwards."""
    grid = ExternalGrid(tmp_path)
    grid.start_scheduler()
    for _ in range(2):
        grid.start_worker()
    grid.wait_for(2)
    yield grid
    grid.stop()


def test_run_through_external_scheduler(external_grid, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "fedjax_grid.cli", "run", "--scheduler", external_grid.address,
         "--out", str(out), "--quiet", "--set", "training.rounds=2",
         "--set", "data.max_test_examples=256",
         "--set", "model.kwargs={width: 0.125, norm: batch, head: cifar}"],
        capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "final global accuracy" in r.stdout
    tasks = pd.read_csv(out / "tasks.csv")
    rounds = pd.read_csv(out / "rounds.csv")
    assert len(rounds) == 2 and (rounds["clients_ok"] == 4).all()
    assert tasks["worker"].str.startswith("tcp://127.0.0.1:").all()
    assert tasks["worker"].nunique() == 2  # both desktops did work
    assert (out / "global_accuracy.png").exists() and (out / "local_loss.png").exists()
    assert len(external_grid.alive_workers()) == 2  # the grid outlives the experiment
    assert external_grid.scheduler.poll() is None



@pytest.mark.slow
def test_nanny_malloc_setting_is_undone_on_dask_workers(tmp_path):
    """`dask worker` (with its nanny) starts the worker with MALLOC_TRIM_THRESHOLD_=65536,
    which makes XLA's buffers an mmap/munmap each; the plugin re-tunes malloc there. An
    embedded LocalCluster does not set the variable."""
    from fedjax_grid.experiments import get_preset
    from fedjax_grid.grid.cluster import open_cluster
    from fedjax_grid.grid.plugin import malloc_state
    cfg = get_preset("quickstart")
    grid = ExternalGrid(tmp_path)
    try:
        grid.start_scheduler()
        grid.start_worker(nanny=True)
        grid.wait_for(1)
        ext = open_cluster(cfg.grid.model_copy(update={"scheduler": grid.address}),
                           local_directory=str(tmp_path / "d1"))
        try:
            states = ext.client.run(malloc_state)
        finally:
            ext.close()
    finally:
        grid.stop()
    assert [tuple(s) for s in states.values()] == [("65536", True)], states
    local = open_cluster(cfg.grid, local_directory=str(tmp_path / "d2"))
    try:
        states = local.client.run(malloc_state)
    finally:
        local.close()
    assert len(states) == 2 and all(tuple(s) == (None, False) for s in states.values()), states


def test_tune_malloc_only_where_the_variable_is_set():
    from fedjax_grid.grid.plugin import tune_malloc
    assert tune_malloc({}) is False
    if sys.platform.startswith("linux"):
        assert tune_malloc({"MALLOC_TRIM_THRESHOLD_": "65536"}) is True
