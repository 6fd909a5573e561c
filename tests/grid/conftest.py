"""Fixtures for engine tests: a real LocalCluster (loopback only) and tiny configs."""
import jax
import numpy as np
import pytest

from fedjax_grid.experiments import ExperimentConfig, get_preset


def tiny_config(**sections) -> ExperimentConfig:
    """The quickstart preset sized down for tests: a narrow VGG-11 on 32x32 digits."""
    cfg = get_preset("quickstart").with_overrides([
        "model.kwargs={width: 0.125, norm: batch, head: cifar}",
        "training.rounds=3", "training.local_epochs=1", "training.batch_size=32",
        "data.max_test_examples=256", "grid.workers=2", "grid.threads_per_worker=1",
    ])
    flat = [f"{k}={v}" for k, v in sections.items()]
    return cfg.with_overrides(flat).validate() if flat else cfg


def _open_grid(tmp_path_factory):
    from fedjax_grid.grid.cluster import open_cluster
    return open_cluster(tiny_config().grid,
                        local_directory=str(tmp_path_factory.mktemp("dask")))


@pytest.fixture(scope="session")
def grid(tmp_path_factory):
    """One real 2-worker LocalCluster for the engine tests, bound to 127.0.0.1: a cluster
    and its workers' first compilation cost ~5 s, once instead of once per module. A test
    must leave it as it found it (no task left running, every worker up); a module that
    needs workers that compiled nothing yet takes ``fresh_grid`` as its ``grid``."""
    handle = _open_grid(tmp_path_factory)
    yield handle
    handle.close()


@pytest.fixture(scope="module")
def fresh_grid(tmp_path_factory):
    """A 2-worker LocalCluster of this module alone (workers that compiled nothing yet)."""
    handle = _open_grid(tmp_path_factory)
    yield handle
    handle.close()


def stopped_and_resumed(cfg, out, grid, rounds: int):
    """``(part, resumed)``: a run of ``cfg`` in ``out`` stopped after ``rounds`` rounds,
    and a new run resumed from its checkpoint (not run yet)."""
    from fedjax_grid.runner import FederatedRun
    part = FederatedRun(cfg, out_dir=out, grid=grid)
    part.run(rounds=rounds)
    return part, FederatedRun(cfg, out_dir=out, grid=grid, resume=True)


def assert_same_state(a, b, batch_stats: bool = False):
    """The two runs' global parameters (and BatchNorm statistics) are bitwise equal."""
    def leaves(run):
        out = jax.tree.leaves(run.state.params)
        return out + jax.tree.leaves(run.state.batch_stats) if batch_stats else out
    la, lb = leaves(a), leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(x, y)
