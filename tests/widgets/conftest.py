"""Fixtures for widget tests: one real 2-worker LocalCluster (127.0.0.1) and tiny configs."""
import pytest

from fedjax_grid.experiments import ExperimentConfig, get_preset


def tiny_config(rounds: int = 2, **sets) -> ExperimentConfig:
    """The quickstart preset sized down: narrow VGG-11 on digits, 4 clients."""
    cfg = get_preset("quickstart").with_overrides([
        "model.kwargs={width: 0.125, norm: batch, head: cifar}", f"training.rounds={rounds}",
        "data.max_test_examples=256", "grid.workers=2", "grid.threads_per_worker=1",
        "grid.host=127.0.0.1", "grid.dashboard_address=127.0.0.1:0",
    ] + [f"{k}={v}" for k, v in sets.items()])
    return cfg.validate()


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    from fedjax_grid.grid.cluster import open_cluster
    handle = open_cluster(tiny_config().grid, local_directory=str(tmp_path_factory.mktemp("dask")))
    yield handle
    handle.close()
