"""Shared test fixtures: where the real data slices are, small JAX settings."""
import pathlib

import pytest

from fedjax_grid.data.paths import shared_data_dir

REPO = pathlib.Path(__file__).resolve().parents[1]
#: $FEDJAX_GRID_SHARED_DATA, else ../shared/data (the package's one definition).
SHARED_DATA = shared_data_dir()


def shared_file(name: str) -> pathlib.Path:
    """Path of a file in ../shared/data, skipping the test when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present (real data slices live in ../shared/data)")
    return path


@pytest.fixture
def cifar10_sample():
    return shared_file("cifar-10-binary-sample.tar.gz")


@pytest.fixture
def tiny_imagenet_sample():
    return shared_file("tiny-imagenet-200-sample.zip")


@pytest.fixture
def dtd_sample():
    return shared_file("dtd-texture-sample.zip")
