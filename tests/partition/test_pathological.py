"""pathological(k): exactly k classes per client, disjoint sets covering the used classes,
even splits of a class among its holders; registered, so the config and forming take it."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedjax_grid.errors import UserError
from fedjax_grid.partition import DISTRIBUTIONS, distribute, make_strategy
from fedjax_grid.partition.distributions import count_matrix


def _labels(seed, k_classes, per_class=30):
    rng = np.random.default_rng(seed)
    return rng.permutation(np.repeat(np.arange(k_classes), per_class + rng.integers(0, 5, k_classes)))


@settings(max_examples=40, deadline=None)
@given(k_classes=st.integers(1, 12), c=st.integers(1, 15), k=st.integers(1, 12),
       seed=st.integers(0, 2**31))
def test_k_classes_per_client_disjoint_covering_and_even(k_classes, c, k, seed):
    k = min(k, k_classes)
    labels = _labels(seed, k_classes)
    parts, info = distribute(labels, c, f"pathological({k})", seed, return_info=True)
    counts = count_matrix(labels, parts, k_classes)
    # every client: exactly its k (distinct) classes
    home = info["home"]
    assert home.shape == (c, k)
    for row, classes in zip(counts, home):
        assert len(set(classes.tolist())) == k
        assert sorted(np.flatnonzero(row).tolist()) == sorted(classes.tolist())
    # disjoint, and covering every example of the used classes
    flat = np.concatenate(parts)
    assert len(np.unique(flat)) == len(flat)
    used = np.unique(home)
    assert len(used) == min(k_classes, c * k)
    np.testing.assert_array_equal(np.sort(flat), np.flatnonzero(np.isin(labels, used)))
    # each class split among its holders in parts differing by at most one
    holders = (counts > 0).sum(axis=0)
    assert holders.max() - holders[used].min() <= 1
    for cls in used:
        held = counts[:, cls][counts[:, cls] > 0]
        assert held.max() - held.min() <= 1


def test_deterministic_under_seed_and_all_data_used_when_c_times_k_covers_k():
    labels = _labels(3, 10)
    a = distribute(labels, 7, "pathological(3)", 11)
    b = distribute(labels, 7, "pathological(k=3)", np.random.default_rng(11))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, distribute(labels, 7, "pathological(3)", 12)))
    assert sum(len(p) for p in a) == len(labels)


def test_impossible_requests_are_one_line_user_errors():
    with pytest.raises(UserError, match="k=4 classes per client exceeds the 3 classes"):
        distribute(np.arange(30) % 3, 2, "pathological(4)", 0)
    with pytest.raises(UserError, match=r"class \d has 1 examples for 2 clients"):
        distribute(np.array([0, 1, 1, 1, 1, 1]), 4, "pathological(1)", 0)
    with pytest.raises(UserError, match="k=0 is invalid: an integer in"):
        distribute(np.arange(30) % 3, 2, "pathological(0)", 0)


def test_registered_so_config_and_forming_strategies_take_it():
    from fedjax_grid.experiments import ExperimentConfig
    from fedjax_grid.experiments.build import partition_strategy
    assert "pathological" in DISTRIBUTIONS and DISTRIBUTIONS.defaults("pathological") == {"k": 2}
    cfg = ExperimentConfig().with_overrides(["partition.distribution=pathological(2)",
                                             "partition.num_clients=5"])
    assert cfg.partition.distribution.model_dump() == {"name": "pathological", "k": 2}
    labels = _labels(5, 10)
    strategy = partition_strategy(cfg, labels)
    assert strategy.dist.label_skewed
    for forming in ("dynamic", "stochastic", "hybrid(0.5)"):
        s = make_strategy(forming, labels, 5, cfg.partition.distribution)
        state = s.init(0)
        for r in range(3):   # each client keeps its two classes (and counts) over the rounds
            parts, state = s.apply(state, None, r)
            np.testing.assert_array_equal(count_matrix(labels, parts, 10), state["counts"])
            assert all(len(np.unique(labels[p])) == 2 for p in parts)
