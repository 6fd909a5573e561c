"""training.precision: the config switch, HParams and local_train in bf16 (real compilation)."""
import jax
import numpy as np
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.experiments import ExperimentConfig
from fedjax_grid.experiments.build import build_hparams
from fedjax_grid.models import get_model
from fedjax_grid.training import HParams, compile_count, init_variables, local_train


def _data(n, seed=0):
    rs = np.random.RandomState(seed)
    return rs.randint(0, 256, (n, 32, 32, 3)).astype(np.uint8), rs.randint(0, 10, n).astype(np.int32)


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def test_hparams_precision():
    assert HParams().precision == "f32"
    assert HParams(precision="bf16").to_dict()["precision"] == "bf16"
    with pytest.raises(UserError, match="precision 'fp16' is not one of f32, bf16"):
        HParams(precision="fp16")


def test_config_switch_reaches_hparams_and_keeps_old_fingerprints():
    cfg = ExperimentConfig()
    assert cfg.training.precision == "f32" and build_hparams(cfg).precision == "f32"
    bf = cfg.with_overrides(["training.precision=bf16"])
    assert build_hparams(bf).precision == "bf16"
    assert bf.fingerprint() != cfg.fingerprint()
    d = cfg.to_dict()
    d["training"].pop("precision")  # a config written before the key existed
    assert ExperimentConfig(**d).fingerprint() == cfg.fingerprint()
    with pytest.raises(UserError, match="training.precision='half' is invalid: allowed are f32, bf16"):
        cfg.with_overrides(["training.precision=half"])
    assert "bfloat16" in ExperimentConfig.model_json_schema()["$defs"]["TrainingConfig"][
        "properties"]["precision"]["description"]


@pytest.mark.slow
def test_local_train_bf16_f32_state_deterministic_and_close_to_f32():
    model = get_model("vgg11", 10, width=0.125, norm="batch")
    variables = init_variables(model, (32, 32, 3), 0)
    data = _data(40)
    hp32 = HParams(optimizer="momentum", learning_rate=0.02, batch_size=16)
    hp16 = HParams(optimizer="momentum", learning_rate=0.02, batch_size=16, precision="bf16")
    v32, m32 = local_train(model, variables, data, hp32, 3)
    v16, m16 = local_train(model, variables, data, hp16, 3)
    before = compile_count()
    again, _ = local_train(model, variables, data, hp16, 3)
    assert compile_count() == before  # the bf16 step is compiled once and cached
    assert all(a.dtype == np.float32 for a in _leaves(v16))
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(v16), _leaves(again)))
    assert not all(np.array_equal(a, b) for a, b in zip(_leaves(v16), _leaves(v32)))
    assert np.isfinite(m16["loss"]) and abs(m16["loss"] - m32["loss"]) < 0.05
    delta32 = np.concatenate([(a - b).ravel() for a, b in
                              zip(_leaves(v32["params"]), _leaves(variables["params"]))])
    delta16 = np.concatenate([(a - b).ravel() for a, b in
                              zip(_leaves(v16["params"]), _leaves(variables["params"]))])
    cos = float(delta16 @ delta32 / np.linalg.norm(delta16) / np.linalg.norm(delta32))
    assert cos > 0.98, cos
