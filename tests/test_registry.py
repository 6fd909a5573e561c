"""Registries: registration, 'name(v)' shorthand, located one-line errors, and plug-ins
registered from outside (one new module) reaching the config, the builders and the CLI help."""
import numpy as np
import pytest
from pydantic import Field

from fedjax_grid.errors import UserError
from fedjax_grid.registry import Choice, NoParams, Params, Registry, describe, parse_call


class ScaleParams(Params):
    factor: float = Field(1.0, gt=0.0, le=10.0, description="multiplier")
    offset: int = Field(0, ge=0, description="added after scaling")


def _registry():
    reg = Registry("toy")

    @reg.register("plain")
    def plain(params):
        """Nothing to set."""
        return "plain"

    @reg.register("scaled", ScaleParams, tag=1)
    def scaled(x=1.0, *, params):
        """Scale then shift."""
        return x * params.factor + params.offset

    return reg


def test_names_schema_defaults_meta_and_sequence_behaviour():
    reg = _registry()
    assert reg.names() == ("plain", "scaled") and list(reg) == ["plain", "scaled"]
    assert "scaled" in reg and "nope" not in reg and reg[1] == "scaled" and len(reg) == 2
    assert ", ".join(reg) == "plain, scaled"
    assert reg.defaults("scaled") == {"factor": 1.0, "offset": 0}
    schema = reg.schema("scaled")["properties"]
    assert schema["factor"]["description"] == "multiplier" and schema["factor"]["maximum"] == 10.0
    assert reg.meta("scaled", "tag") == 1 and reg.meta("plain", "tag", 0) == 0
    assert reg.get("plain").doc == "Nothing to set."
    assert describe(reg) == "plain  Nothing to set.\nscaled(factor=1.0, offset=0)  Scale then shift."
    with pytest.raises(ValueError, match="already registered"):
        reg.register("plain")(lambda: None)
    with pytest.raises(TypeError, match="Params subclass"):
        reg.register("bad", dict)


@pytest.mark.parametrize("text,expected", [
    ("plain", {"name": "plain"}),
    (" scaled ( 2.5 ) ", {"name": "scaled", "factor": 2.5}),
    ("scaled(2, 3)", {"name": "scaled", "factor": 2, "offset": 3}),
    ("scaled(offset=4)", {"name": "scaled", "offset": 4}),
    ("scaled(offset=4, factor=0.5)", {"name": "scaled", "offset": 4, "factor": 0.5}),
    ("scaled()", {"name": "scaled"}),
])
def test_shorthand_parsing(text, expected):
    assert parse_call(text, _registry(), "x.y") == expected


def test_validate_fills_defaults_and_build_calls_with_keywords():
    reg = _registry()
    assert reg.validate("scaled(2)") == {"name": "scaled", "factor": 2.0, "offset": 0}
    assert reg.validate({"name": "scaled", "offset": 1}, fill=False) == {"name": "scaled", "offset": 1}
    assert reg.build("scaled(2, 1)", 3.0) == 7.0
    assert reg.build({"name": "plain"}) == "plain"
    choice = reg.choice("scaled(factor=2.5)")
    assert isinstance(choice, Choice) and choice.name == "scaled" and choice.factor == 2.5
    assert choice.params == {"factor": 2.5, "offset": 0}
    assert choice.model_dump() == {"name": "scaled", "factor": 2.5, "offset": 0}
    assert str(choice) == "scaled(factor=2.5, offset=0)"
    assert str(reg.choice("plain")) == "plain"
    assert reg.choice(str(choice)) == choice == reg.choice(choice)   # the shorthand reads back


@pytest.mark.parametrize("spec,path,message,err_path", [
    ("zipf", "sec.choice", "sec.choice.name='zipf' is invalid: allowed are plain, scaled",
     "sec.choice.name"),
    ("zipf", "", "unknown toy 'zipf'; allowed: plain, scaled", None),
    ("scaled(11)", "sec.choice",
     "sec.choice.factor=11 is invalid: a finite number in (0, 10] is required", "sec.choice.factor"),
    ("scaled(offset=-1)", "", "toy scaled: offset=-1 is invalid: an integer >= 0 is required", None),
    ("scaled(x)", "sec.choice", "sec.choice.factor='x' is invalid", "sec.choice.factor"),
    ({"name": "scaled", "factor": float("nan")}, "s.c", "s.c.factor=nan is invalid: a finite", "s.c.factor"),
    ({"name": "scaled", "offset": True}, "s.c", "s.c.offset=True is invalid: an integer >= 0", "s.c.offset"),
    ({"name": "scaled", "scale": 2}, "s.c",
     "unknown config key 's.c.scale': toy scaled takes parameters factor, offset", "s.c.scale"),
    ({"name": "plain", "k": 2}, "s.c", "unknown config key 's.c.k': toy plain takes no parameters",
     "s.c.k"),
    ({"name": "plain", "k": 2}, "", "toy plain: unknown parameter 'k'; allowed: none", None),
    ("plain(3)", "s.c", "s.c='plain(3)' is invalid: plain takes no parameters", "s.c"),
    ("scaled(1, 2, 3)", "s.c", "scaled takes parameters factor, offset", "s.c"),
    ("not a call!", "s.c", "s.c='not a call!' is invalid: a name like plain", "s.c"),
    (42, "s.c", "s.c=42 is invalid: a name (allowed: plain, scaled)", "s.c"),
])
def test_errors_are_one_line_and_located(spec, path, message, err_path):
    with pytest.raises(UserError) as e:
        _registry().validate(spec, path)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert e.value.path == err_path


# -- components registered from outside: what a new one-file plug-in gets ---------------

def test_a_new_distribution_reaches_the_config_partition_and_help():
    from fedjax_grid.cli import choices_text
    from fedjax_grid.experiments import ExperimentConfig
    from fedjax_grid.experiments.build import partition_strategy
    from fedjax_grid.partition import DISTRIBUTIONS, distribute

    class EveryOther(Params):
        offset: int = Field(0, ge=0, le=1, description="start at 0 or 1")

    @DISTRIBUTIONS.register("every_other", EveryOther)
    def every_other(labels, num_clients, rng, info, params):
        """Client c gets indices c, c+C, ... of every other example."""
        idx = np.arange(params.offset, labels.size, 2)
        return [np.sort(idx[c::num_clients]) for c in range(num_clients)]

    try:
        cfg = ExperimentConfig().with_overrides(["partition.distribution=every_other(1)"])
        assert cfg.partition.distribution.offset == 1
        parts = distribute(np.arange(20) % 2, 2, cfg.partition.distribution, 0)
        assert [p.tolist() for p in parts] == [[1, 5, 9, 13, 17], [3, 7, 11, 15, 19]]
        strategy = partition_strategy(cfg, np.arange(40) % 4, for_run=False)
        assert len(strategy.init(0)["indices"]) == 20
        assert "every_other(offset=0)" in choices_text()
        with pytest.raises(UserError, match="partition.distribution.offset=2"):
            cfg.with_overrides(["partition.distribution.offset=2"])
    finally:
        DISTRIBUTIONS.unregister("every_other")


def test_a_new_aggregator_server_optimizer_and_model_are_built_from_the_config():
    import optax

    from fedjax_grid.experiments import ExperimentConfig
    from fedjax_grid.experiments.build import build_algorithm, build_model
    from fedjax_grid.models import cached_model
    from fedjax_grid.federated import AGGREGATORS, SERVER_OPTIMIZERS, median
    from fedjax_grid.models import MODELS, VGG

    class LrParams(Params):
        lr: float = Field(0.5, gt=0.0)

    AGGREGATORS.register("median_too", NoParams)(lambda params: median())
    SERVER_OPTIMIZERS.register("plain_sgd", LrParams)(lambda params: optax.sgd(params.lr))
    MODELS.register("tiny_vgg", NoParams)(
        lambda num_classes, params: VGG(config="vgg11", num_classes=num_classes, width=0.0625))
    try:
        cfg = ExperimentConfig().with_overrides([
            "server.aggregator=median_too", "server.optimizer=plain_sgd", "model.name=tiny_vgg"])
        assert cfg.server.optimizer.lr == 0.5   # its own default
        algo = build_algorithm(cfg)
        state = algo.init({"params": {"w": np.zeros(3, np.float32)}})
        new, diag = algo.apply(state, [({"params": {"w": np.full(3, 2.0, np.float32)}}, 1)])
        np.testing.assert_allclose(new.params["w"], 1.0)   # 0 + 0.5 * median delta 2
        key, model = build_model(cfg, 10)
        assert key[0] == "tiny_vgg" and model.width == 0.0625
    finally:
        AGGREGATORS.unregister("median_too")
        SERVER_OPTIMIZERS.unregister("plain_sgd")
        MODELS.unregister("tiny_vgg")
        cached_model.cache_clear()
