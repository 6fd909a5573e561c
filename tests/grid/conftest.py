"""Fixtures for engine tests: a real LocalCluster (loopback only) and tiny configs."""
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


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """One real 2-worker LocalCluster per test module, bound to 127.0.0.1."""
    from fedjax_grid.grid.cluster import open_cluster
    local = tmp_path_factory.mktemp("dask")
    cfg = tiny_config()
    handle = open_cluster(cfg.grid, local_directory=str(local))
    yield handle
    handle.close()
