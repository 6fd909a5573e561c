"""Shared test fixtures: where the real data slices are, small JAX settings; the suite's
time limits (pytest-timeout) and hypothesis settings."""
import pathlib
import time

import pytest
from hypothesis import HealthCheck, settings

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


def slowdown(cpu_s: float = 0.2) -> float:
    """How many times slower than on an idle core this machine runs a CPU-bound loop now
    (>= 1): its wall time over its CPU time, so no reference machine is needed. A time
    bound stated for an idle machine is multiplied by it (``scaled``): on a loaded 2-core
    CI runner the bound stretches with the load instead of failing the test."""
    t0, c0 = time.perf_counter(), time.process_time()
    x = 0
    while time.process_time() - c0 < cpu_s:
        x += sum(range(2000))
    return max(1.0, (time.perf_counter() - t0) / max(time.process_time() - c0, 1e-9))


def scaled(seconds: float) -> float:
    """``seconds`` (a bound on an idle machine) times the ``slowdown()`` measured now."""
    return seconds * slowdown()


def within(elapsed: float, seconds: float) -> bool:
    """``elapsed < scaled(seconds)``, measuring the slowdown only when ``elapsed`` exceeds
    ``seconds`` itself (a measurement costs 0.2 s of CPU: not once per table case)."""
    return elapsed < seconds or elapsed < scaled(seconds)


#: Time limit of a test marked ``slow`` without its own ``@pytest.mark.timeout`` (seconds);
#: the default one (pyproject's ``timeout``) is 600 s.
SLOW_TIMEOUT_S = 1800


def pytest_configure(config):
    """The engine's persistent compilation cache (``$FEDJAX_GRID_COMPILE_CACHE`` or
    ``~/.cache/fedjax_grid/jax``) from the first test on, as in the product: a test of a
    model or a step alone reuses what an earlier run compiled, whatever the tests' order."""
    from fedjax_grid.training.compile_cache import default_cache_dir, enable_persistent_cache
    enable_persistent_cache(default_cache_dir())


def pytest_collection_modifyitems(config, items):
    """Slow tests get SLOW_TIMEOUT_S unless they set a limit themselves."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))


# Property tests: no example database written into the checkout, no per-example deadline
# (a loaded 2-core machine varies too much; the tests bound their own time), and the
# same examples on every run (derandomize) so that a failure reproduces.
settings.register_profile("fedjax_grid", database=None, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.load_profile("fedjax_grid")
