"""One real 2-worker LocalCluster (127.0.0.1) per module, reached by the CLI with --scheduler."""
import pytest

from tests.widgets.conftest import tiny_config


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    from fedjax_grid.grid.cluster import open_cluster
    handle = open_cluster(tiny_config().grid, local_directory=str(tmp_path_factory.mktemp("dask")))
    yield handle
    handle.close()
