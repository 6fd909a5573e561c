"""ExperimentConfig: typed sections (pydantic), located one-line errors, registry choices,
--set keys (shorthand, dotted, bare, ambiguous), round trips, migration of old flat files."""
import json
import pathlib

import pytest

from fedjax_grid.errors import CheckpointError, UserError
from fedjax_grid.experiments import ExperimentConfig, get_preset, list_presets
from fedjax_grid.experiments import config as C

LEGACY = pathlib.Path(__file__).parent / "legacy"


def test_choices_are_mappings_of_name_and_own_parameters():
    d = ExperimentConfig().to_dict()
    assert d["partition"]["distribution"] == {"name": "iid"}
    assert d["partition"]["forming"] == {"name": "static"}
    assert d["server"]["aggregator"] == {"name": "mean", "accumulate": "exact"}
    assert d["server"]["optimizer"] == {"name": "fedavg", "lr": 1.0}
    assert d["faults"]["attack"] == {"name": "scale", "scale": 10.0}
    for gone in ("beta", "share", "alpha", "shards_per_client", "sigma", "keep"):
        assert gone not in d["partition"]
    for gone in ("trim_fraction", "clip_norm", "lr", "momentum"):
        assert gone not in d["server"]
    assert "attack_scale" not in d["faults"]


def test_each_server_optimizer_gets_its_own_defaults():
    cfg = ExperimentConfig().with_overrides(["server.optimizer=fedadam"])
    assert cfg.server.optimizer.model_dump() == {"name": "fedadam", "lr": 0.01, "b1": 0.9,
                                                 "b2": 0.99, "eps": 0.001}
    cfg = cfg.with_overrides(["server.optimizer.lr=0.03", "server.optimizer.b2=0.999"])
    assert (cfg.server.optimizer.lr, cfg.server.optimizer.b2) == (0.03, 0.999)
    # a new name starts from that optimizer's defaults, not the previous one's parameters
    cfg = cfg.with_overrides(["server.optimizer.name=fedavgm"])
    assert cfg.server.optimizer.model_dump() == {"name": "fedavgm", "lr": 1.0, "momentum": 0.9}
    assert ExperimentConfig().with_overrides(["server.optimizer=fedadagrad"]).server.optimizer.lr == 0.1


@pytest.mark.parametrize("sets", [
    ["partition.distribution=stratified(0.9)"],
    ["partition.distribution=stratified", "partition.distribution.share=0.9"],
    ["partition.distribution={name: stratified, share: 0.9}"],
    ["partition.distribution=stratified(share=0.9)"],
    ["partition.distribution.name=stratified", "share=0.9"],
])
def test_shorthand_and_dotted_keys_give_the_same_config(sets):
    cfg = ExperimentConfig().with_overrides(sets)
    assert cfg.partition.distribution.model_dump() == {"name": "stratified", "share": 0.9,
                                                       "classes_per_client": None}
    assert str(cfg.partition.distribution) == "stratified(0.9)"


def test_a_parameter_must_belong_to_the_component_chosen_so_far():
    with pytest.raises(UserError, match="'partition.forming.keep': forming strategy static takes no"):
        ExperimentConfig().with_overrides(["keep=0.25", "partition.forming=hybrid"])


def test_bare_keys_unique_or_refused_naming_the_candidates():
    cfg = ExperimentConfig().with_overrides(["rounds=3", "workers=3",
                                             "partition.forming=hybrid", "keep=0.25",
                                             "scale=4", "name=x", "seed=5"])
    assert (cfg.training.rounds, cfg.grid.workers, cfg.partition.forming.keep) == (3, 3, 0.25)
    assert (cfg.faults.attack.scale, cfg.name, cfg.seed) == (4.0, "x", 5)
    for key, candidates in (("lr", "training.lr, server.optimizer.lr"),
                            ("momentum", "training.momentum, server.optimizer.momentum"),
                            ("optimizer", "training.optimizer, server.optimizer")):
        with pytest.raises(UserError) as e:
            ExperimentConfig().with_overrides([f"{key}=0.1"])
        assert f"config key '{key}' is ambiguous: use one of {candidates}" == str(e.value)


@pytest.mark.parametrize("sets,message,path", [
    (["training.rounds=0"], "training.rounds=0 is invalid: an integer in [1, 100000] is required",
     "training.rounds"),
    (["training.lr=-1"], "training.lr=-1 is invalid: a finite number > 0 is required", "training.lr"),
    (["training.rounds=2.5"], "training.rounds=2.5 is invalid: an integer", "training.rounds"),
    (["training.augment=3"], "training.augment=3 is invalid: true or false is required",
     "training.augment"),
    (["training.optimizer=lion"], "training.optimizer='lion' is invalid: allowed are sgd, momentum",
     "training.optimizer"),
    (["grid.quorum=1.5"], "grid.quorum=1.5 is invalid: a finite number in [0, 1] is required",
     "grid.quorum"),
    (["grid.deadline_s=.inf"], "grid.deadline_s=inf is invalid", "grid.deadline_s"),
    (["data.image_size=4"], "data.image_size=4 is invalid: an integer in [8, 1024], or null",
     "data.image_size"),
    (["seed=-1"], "seed=-1 is invalid: an integer in [0, 4294967295] is required", "seed"),
    (["partition.distribution=zipf"],
     "partition.distribution.name='zipf' is invalid: allowed are iid, balanced, stratified",
     "partition.distribution.name"),
    (["partition.distribution=balanced(1.2)"],
     "partition.distribution.beta=1.2 is invalid: a finite number in [0, 1] is required",
     "partition.distribution.beta"),
    (["partition.forming=hybrid(keep=2)"], "partition.forming.keep=2 is invalid",
     "partition.forming.keep"),
    (["server.aggregator=trimmed_mean(0.5)"],
     "server.aggregator.trim_fraction=0.5 is invalid: a finite number in [0, 0.5) is required",
     "server.aggregator.trim_fraction"),
    (["server.optimizer=fedadam", "server.optimizer.b1=1"],
     "server.optimizer.b1=1 is invalid: a finite number in [0, 1) is required", "server.optimizer.b1"),
    (["faults.attack=flood"],
     "faults.attack.name='flood' is invalid: allowed are scale, signflip, random", "faults.attack.name"),
    (["server.optimizer.momentum=0.5"],
     "unknown config key 'server.optimizer.momentum': server optimizer fedavg takes parameters lr",
     "server.optimizer.momentum"),
    (["model.name=resnet"], "model.name='resnet' is invalid: allowed are vgg11", "model.name"),
    (["model.kwargs={width: 0}"], "model.kwargs.width=0 is invalid: a finite number in (0, 4]",
     "model.kwargs.width"),
    (["model.kwargs.norm=layer"], "model.kwargs.norm='layer' is invalid: allowed are none, batch, group",
     "model.kwargs.norm"),
    (["model.name=mobilenet_v3_small", "model.kwargs.width=0.5"],
     "unknown config key 'model.kwargs.width': model mobilenet_v3_small takes", "model.kwargs.width"),
    (["data.options={channels: 2}"], "data.options.channels=2 is invalid: allowed are 1, 3",
     "data.options.channels"),
    (["data.source=mnist"], "data.source='mnist' is invalid: allowed are", "data.source"),
    (["training.clients_per_round=9"], "training.clients_per_round=9 is invalid: an integer in [1, 4]",
     "training.clients_per_round"),
    (["grid.scheduler=nowhere"], "grid.scheduler='nowhere' is invalid: an address like",
     "grid.scheduler"),
    (["training.epochz=3"], "unknown config key 'training.epochz'", "training.epochz"),
    (["partition.distribution.share.x=1"], "unknown config key", "partition.distribution"),
    (["model.kwargs=3"], "a mapping like {width: 0.25} is required", "model.kwargs"),
])
def test_errors_are_one_line_with_the_path_of_the_bad_value(sets, message, path):
    with pytest.raises(UserError) as e:
        ExperimentConfig().with_overrides(sets)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert e.value.path == path


def test_file_errors_name_the_path_and_sections_must_be_mappings():
    with pytest.raises(UserError) as e:
        ExperimentConfig.from_dict({"partition": {"distribution": {"name": "dirichlet", "alpha": 0}}})
    assert e.value.path == "partition.distribution.alpha"
    with pytest.raises(UserError, match="config section 'training' must be a mapping, got 5"):
        ExperimentConfig.from_dict({"training": 5})
    with pytest.raises(UserError, match="unknown config key 'bogus'; allowed: name, seed, model"):
        ExperimentConfig.from_dict({"bogus": 1})
    with pytest.raises(UserError, match="config must be a mapping of sections, got list"):
        ExperimentConfig.from_dict([1])


def test_sections_are_typed_models_with_descriptions_and_bounds():
    schema = ExperimentConfig.model_json_schema()
    assert schema["additionalProperties"] is False
    for name, section in C.SECTIONS.items():
        s = section.model_json_schema()
        assert s["additionalProperties"] is False and s["title"] == name
        for field, prop in s["properties"].items():
            assert prop.get("description"), f"{name}.{field} has no description"
    rounds = C.TrainingConfig.model_json_schema()["properties"]["rounds"]
    assert (rounds["minimum"], rounds["maximum"]) == (1, C.MAX_ROUNDS)
    dist = C.PartitionConfig.model_json_schema()["properties"]["distribution"]
    assert [v["title"] for v in dist["oneOf"]] == list(C.DISTRIBUTIONS)
    # every registered component has described parameters
    for key, registry in C.REGISTRIES.items():
        for name in registry:
            for param, prop in registry.schema(name).get("properties", {}).items():
                assert prop.get("description"), f"{key} {name}.{param} has no description"


def test_sections_validate_construction_and_assignment_with_located_errors():
    with pytest.raises(UserError) as e:
        C.TrainingConfig(lr=0)
    assert e.value.path == "training.lr" and "training.lr=0 is invalid" in str(e.value)
    cfg = ExperimentConfig()
    cfg.training.rounds = 7
    cfg.partition.distribution = "dirichlet(0.3)"
    assert cfg.partition.distribution.alpha == 0.3 and cfg.training.rounds == 7
    with pytest.raises(UserError) as e:
        cfg.server.aggregator = {"name": "trimmed_mean", "trim_fraction": 0.7}
    assert e.value.path == "server.aggregator.trim_fraction"
    cfg.model.kwargs["width"] = -1          # an in-place edit of a mapping: validate() finds it
    with pytest.raises(UserError, match="model.kwargs.width=-1"):
        cfg.validate()


def test_every_registered_name_is_accepted_by_the_config():
    for key, registry in C.REGISTRIES.items():
        assert len(registry) > 0
        for name in registry:
            if (key, name) == ("server.broadcast_codec", "topk"):  # full model: refused, located
                with pytest.raises(UserError, match="server.broadcast_codec"):
                    ExperimentConfig().with_overrides([f"{key}={name}"])
                continue
            cfg = ExperimentConfig().with_overrides([f"{key}={name}"])
            section, field = key.split(".")
            value = getattr(getattr(cfg, section), field)
            assert (value if isinstance(value, str) else value.name) == name


@pytest.mark.parametrize("preset", list(list_presets()))
def test_round_trips_json_yaml_and_file(preset, tmp_path):
    cfg = get_preset(preset).with_overrides(["server.optimizer=fedyogi", "faults.attack=random(3)",
                                             "partition.forming=hybrid(0.3)"])
    assert ExperimentConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert ExperimentConfig.from_dict(cfg.to_dict()).fingerprint() == cfg.fingerprint()
    for suffix in (".json", ".yaml"):
        path = cfg.save(tmp_path / f"c{suffix}")
        assert ExperimentConfig.load(path) == cfg
        assert ExperimentConfig.load(path).legacy_keys == ()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.yaml"]   # no temp files
    import yaml
    assert yaml.safe_load(cfg.to_yaml(comments=True)) == cfg.to_dict()   # comments are comments


def test_fingerprint_ignores_rounds_grid_and_name_only():
    a = get_preset("quickstart")
    assert a.with_overrides(["training.rounds=99", "grid.workers=7", "name=x"]).fingerprint() == \
        a.fingerprint()
    assert a.with_overrides(["server.optimizer.lr=0.5"]).fingerprint() != a.fingerprint()


# -- files of the earlier (flat) version ---------------------------------------------------

def test_old_flat_files_migrate_to_the_new_shape():
    default = ExperimentConfig.load(LEGACY / "default.json")
    assert default == ExperimentConfig()
    assert "partition.beta" in default.legacy_keys and "server.lr" in default.legacy_keys
    paper = ExperimentConfig.load(LEGACY / "paper_vgg16_balanced.json")
    assert paper == get_preset("paper-vgg16-cifar10-balanced")
    robust = ExperimentConfig.load(LEGACY / "robust_fedadam.yaml")
    assert robust.partition.distribution.model_dump() == {"name": "dirichlet", "alpha": 0.3}
    assert robust.partition.forming.model_dump() == {"name": "hybrid", "keep": 0.25}
    assert robust.server.aggregator.model_dump() == {"name": "trimmed_mean", "trim_fraction": 0.2}
    # the run used lr 0.03 and the Adam defaults of the time (b1 0.9, b2 0.99, eps 1e-3)
    assert robust.server.optimizer.model_dump() == {"name": "fedadam", "lr": 0.03, "b1": 0.9,
                                                    "b2": 0.99, "eps": 0.001}
    assert robust.faults.attack.model_dump() == {"name": "signflip", "scale": 4.0}
    assert robust.server.max_norm_ratio == 5.0
    clipped = ExperimentConfig.load(LEGACY / "clipped_fedavgm.json")
    assert clipped.partition.distribution.model_dump() == {"name": "shards", "shards_per_client": 3}
    assert clipped.server.aggregator.model_dump() == {"name": "clipped_mean", "max_norm": 2.5}
    assert clipped.server.optimizer.model_dump() == {"name": "fedavgm", "lr": 0.7, "momentum": 0.8}
    # saved again, a migrated config is a current file
    assert ExperimentConfig.from_dict(json.loads(robust.to_json())).legacy_keys == ()


def test_migration_drops_parameters_of_components_not_chosen():
    d, moved = C.migrate({"partition": {"distribution": "iid", "beta": 0.3, "keep": 0.2},
                          "server": {"optimizer": "fedadam", "momentum": 0.5}})
    assert d == {"partition": {"distribution": "iid"}, "server": {"optimizer": "fedadam"}}
    assert set(moved) == {"partition.beta", "partition.keep", "server.momentum"}


def test_resuming_a_run_of_the_old_shape_is_refused_in_one_line(tmp_path):
    from fedjax_grid.runner.resume import stored_config
    run = tmp_path / "old-run"
    run.mkdir()
    (run / "config.json").write_text((LEGACY / "default.json").read_text())
    assert ExperimentConfig.load(run / "config.json").fingerprint() != "c00249b186a63ffc"
    with pytest.raises(CheckpointError) as e:
        stored_config(run)
    message = str(e.value)
    assert "earlier fedjax-grid" in message and "partition.beta" in message
    assert "fedjax-grid run --config" in message and "\n" not in message
