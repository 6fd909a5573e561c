"""Shared test fixtures: where the real data slices are, small JAX settings."""
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
    os.environ.get("FEDJAX_GRID_SHARED_DATA", REPO.parent / "shared" / "data"))


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
