"""local_train on the project's real VGG11 (narrow, 32x32): ~25 s on 2 CPU cores, so slow."""
import numpy as np
import pytest

from fedjax_grid.training import HParams, compile_count, evaluate, init_variables, local_train


@pytest.mark.slow
def test_vgg11_trains_without_recompiling():
    models = pytest.importorskip("fedjax_grid.models")
    model = models.get_model("vgg11", 10, width=0.125, norm="batch", dropout_rate=0.1)
    variables = init_variables(model, (32, 32, 3), 0)
    rs = np.random.RandomState(0)
    images, labels = rs.randint(0, 256, (20, 32, 32, 3)).astype(np.uint8), rs.randint(0, 10, 20)
    trained, metrics = local_train(model, variables, (images, labels), HParams(batch_size=8), 0)
    assert np.isfinite(metrics["loss"]) and metrics["num_steps"] == 3
    assert set(trained) == {"params", "batch_stats"}
    before = compile_count()
    _, metrics = local_train(model, trained, (images[:13], labels[:13]),
                             HParams(batch_size=8, learning_rate=0.1), 1)
    assert compile_count() == before and metrics["num_steps"] == 2
    result = evaluate(model, trained, (images, labels), 8)
    assert np.isfinite(result["loss"]) and result["num_examples"] == 20
