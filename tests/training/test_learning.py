"""A real learning check: sklearn's bundled 8x8 digits (no download)."""
import numpy as np
import pytest
from training_models import DigitsCNN

from fedjax_grid.training import HParams, evaluate, init_variables, local_train


def _digits():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(labels))
    train, test = order[:1400], order[1400:]
    return (images[train], labels[train]), (images[test], labels[test])


def test_three_epochs_on_digits_reach_80_percent():
    train, test = _digits()
    model = DigitsCNN()
    variables = init_variables(model, (8, 8, 1), 0)
    before = evaluate(model, variables, test, 128)
    hp = HParams(optimizer="adam", learning_rate=3e-3, batch_size=32, epochs=3)
    variables, metrics = local_train(model, variables, train, hp, 0)
    after = evaluate(model, variables, test, 128)
    assert metrics["num_examples"] == 1400 and metrics["num_steps"] == 3 * 44
    assert before["accuracy"] < 0.3
    assert after["accuracy"] > 0.8, after
    assert after["loss"] < before["loss"]
