"""ConfigPanel: widgets <-> ExperimentConfig, validation messages in place, JSON files."""
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.experiments import config as C
from fedjax_grid.experiments import get_preset
from fedjax_grid.widgets import ConfigPanel, field_specs
from fedjax_grid.widgets.fields import field_for


def test_every_config_field_has_a_widget_and_choices_come_from_the_registries():
    panel = ConfigPanel()
    fields = ["name", "seed", "out_dir"] + [
        f"{s}.{f}" for s, model in C.SECTIONS.items() for f in model.model_fields
        if f"{s}.{f}" not in ("model.kwargs", "data.options")]
    assert sorted(k for k, s in panel.specs.items() if not s.param) == sorted(fields)
    for key, registry in C.REGISTRIES.items():
        assert _options(panel.widgets[key]) == list(registry)
    kinds = {s.key: s.kind for s in field_specs()}
    assert kinds["training.augment"] == "bool" and kinds["partition.num_clients"] == "int"
    assert kinds["grid.quorum"] == "optional" and kinds["grid.deadline_s"] == "optional"  # or auto
    assert kinds["partition.distribution"] == "component" and kinds["training.optimizer"] == "choice"
    assert panel.widgets["training.lr"].tooltip == "training.lr: the clients' learning rate"


def _options(dropdown):
    return [value for _, value in dropdown.options]


#: Registered names a config field refuses (a located error): the broadcast sends the full
#: model, which top-k would zero out.
REFUSED = {("server.broadcast_codec", "topk")}


def test_every_registered_name_is_offered_and_its_parameters_come_from_its_schema():
    """Headless: each registry's dropdown lists all its names; choosing one builds the
    fields of that component's parameters (its JSON schema) and the config accepts it."""
    from fedjax_grid.widgets.fields import params_key
    panel = ConfigPanel()
    for key, registry in C.REGISTRIES.items():
        for name in registry:
            panel.widgets[key].value = name
            prefix = params_key(key) + "."
            shown = sorted(k[len(prefix):] for k, s in panel.specs.items()
                           if s.param and k.startswith(prefix))
            assert shown == sorted(registry.schema(name).get("properties", {})), (key, name)
            if (key, name) in REFUSED:  # offered, and the panel says why the config refuses it
                assert not panel.valid and panel.error_field == key, panel.error
                panel.widgets[key].value = registry.names()[0]
                continue
            assert panel.valid or panel.error_field in (None, "data.path"), panel.error
            if panel.valid:
                value = getattr(getattr(panel.config, key.split(".")[0]), key.split(".")[1])
                assert (value if isinstance(value, str) else value.name) == name


def test_widget_values_make_the_cli_config():
    panel = ConfigPanel(get_preset("quickstart"))
    assert panel.config == get_preset("quickstart")
    w = panel.widgets
    w["model.name"].value = "vgg16"
    w["model.kwargs.width"].value = 0.125
    w["partition.distribution"].value = "balanced"
    assert w["partition.distribution.beta"].value == 0.8      # balanced's own default
    w["partition.distribution.beta"].value = 0.7
    w["partition.forming"].value = "hybrid"
    w["partition.forming.keep"].value = 0.25
    w["partition.num_clients"].value = 6
    w["training.clients_per_round"].value = "3"
    w["training.lr"].value = 0.02
    w["training.augment"].value = True
    w["server.optimizer"].value = "fedadam"
    assert w["server.optimizer.lr"].value == 0.01               # fedadam's own default
    w["server.optimizer.b2"].value = 0.999
    w["grid.deadline_s"].value = "12.5"
    w["faults.enabled"].value = True
    w["faults.dropout_prob"].value = 0.1
    w["faults.attack"].value = "random"
    cfg = panel.config
    expected = get_preset("quickstart").with_overrides([
        "model.name=vgg16", "model.kwargs.width=0.125",
        "partition.distribution=balanced(0.7)", "partition.forming=hybrid(0.25)",
        "partition.num_clients=6", "training.clients_per_round=3",
        "training.lr=0.02", "training.augment=true", "server.optimizer=fedadam(b2=0.999)",
        "grid.deadline_s=12.5", "faults.enabled=true", "faults.dropout_prob=0.1",
        "faults.attack=random"]).validate()
    assert cfg == expected
    assert cfg.fingerprint() == expected.fingerprint()
    w["grid.deadline_s"].value = ""  # empty box: None
    assert panel.config.grid.deadline_s is None
    # a model's kwargs keep only what was set (quickstart's norm/head and the width)
    assert panel.config.model.kwargs == {"width": 0.125, "norm": "batch", "head": "cifar"}


@pytest.mark.parametrize("key,value,needle", [
    ("partition.num_clients", 0, "partition.num_clients=0"),
    ("training.lr", -1.0, "training.lr=-1.0"),
    ("training.clients_per_round", "9", "training.clients_per_round=9"),
    ("training.clients_per_round", "many", "training.clients_per_round='many'"),
    ("grid.retries", 1000, "grid.retries=1000"),
    ("partition.distribution.alpha", 0.0, "partition.distribution.alpha=0.0"),
    ("server.aggregator.trim_fraction", 0.5, "server.aggregator.trim_fraction=0.5"),
    ("model.kwargs.width", 0.0, "model.kwargs.width=0.0"),
    ("model.kwargs.dropout_rate", "lots", "model.kwargs.dropout_rate='lots'"),
    ("data.options.angles", "[1, 2", "data.options.angles="),
])
def test_invalid_value_shows_message_next_to_field(key, value, needle):
    panel = ConfigPanel()
    for component, name in (("partition.distribution", "dirichlet"),
                            ("server.aggregator", "trimmed_mean"),
                            ("data.source", "texture_fragments")):
        if key.startswith(component.replace("data.source", "data.options") + "."):
            panel.widgets[component].value = name
    panel.widgets[key].value = value
    assert not panel.valid and panel.error_field == key
    assert needle in panel.error and "invalid" in panel.error
    assert needle.split("=")[0] in panel.messages[key].value
    assert panel.rows[key].layout.display is None  # the culprit is visible
    others = [k for k, m in panel.messages.items() if m.value and k != key]
    assert others == []
    assert "invalid" in panel.status.value
    with pytest.raises(UserError, match="invalid"):
        panel.config
    # fixing it clears the message
    panel.set_config(get_preset("quickstart"))
    assert panel.valid and not any(m.value for m in panel.messages.values())


def test_parameter_fields_change_with_the_dropdown_and_irrelevant_fields_hide():
    panel = ConfigPanel()
    shown = lambda k: panel.rows[k].layout.display != "none"  # noqa: E731
    params = lambda p: sorted(k for k, s in panel.specs.items() if s.param and k.startswith(p))  # noqa: E731
    dist = panel.widgets["partition.distribution"]
    for kind, fields in (("balanced", ["beta", "classes_per_client"]), ("dirichlet", ["alpha"]),
                         ("shards", ["shards_per_client"]), ("quantity", ["sigma"]), ("iid", [])):
        dist.value = kind
        assert params("partition.distribution.") == [f"partition.distribution.{f}" for f in fields]
        assert len(panel.param_boxes["partition.distribution"].children) == len(fields)
    panel.widgets["partition.forming"].value = "static"
    assert params("partition.forming.") == []
    panel.widgets["partition.forming"].value = "hybrid"
    assert params("partition.forming.") == ["partition.forming.keep"]
    assert not shown("faults.dropout_prob") and not shown("faults.attack")
    assert panel.param_boxes["faults.attack"].layout.display == "none"
    panel.widgets["faults.enabled"].value = True
    assert shown("faults.dropout_prob") and shown("faults.attack")
    assert not shown("training.momentum") or panel.widgets["training.optimizer"].value == "momentum"
    panel.widgets["training.optimizer"].value = "adam"
    assert not shown("training.momentum")


def test_save_load_round_trip_and_cli_reads_it(tmp_path):
    from fedjax_grid.cli import build_parser, resolve_config
    panel = ConfigPanel()
    panel.widgets["partition.forming"].value = "stochastic"
    panel.widgets["training.rounds"].value = 5
    path = panel.save(tmp_path / "saved.json")
    args = build_parser().parse_args(["run", "--config", str(path)])
    assert resolve_config(args) == panel.config  # the CLI builds the same object
    other = ConfigPanel()
    assert other.config != panel.config
    other.load(path)
    assert other.config == panel.config
    # buttons: a bad file shows a one-line message instead of raising
    other.path.value = str(tmp_path / "missing.json")
    other.load_button.click()
    assert "does not exist" in other.status.value


def test_a_bad_file_is_reported_beside_the_field_it_names(tmp_path):
    import json
    panel = ConfigPanel()
    (tmp_path / "bad.json").write_text(json.dumps({"model": {"name": "resnet50"}}))
    panel.path.value = str(tmp_path / "bad.json")
    panel.load_button.click()
    assert panel.error_field == "model.name" and "resnet50" in panel.error
    assert "resnet50" in panel.messages["model.name"].value
    (tmp_path / "bad2.json").write_text(json.dumps(
        {"server": {"optimizer": {"name": "fedadam", "eps": 0}}}))
    panel.path.value = str(tmp_path / "bad2.json")
    panel.load_button.click()
    assert panel.error_field is None or panel.error_field.startswith("server.optimizer")
    assert "server.optimizer.eps=0" in panel.error


def test_error_paths_map_to_the_nearest_field():
    keys = {"training.lr", "model.name", "partition.distribution", "partition.distribution.share"}
    assert field_for("training.lr", keys) == "training.lr"
    assert field_for("partition.distribution.share", keys) == "partition.distribution.share"
    assert field_for("partition.distribution.beta", keys) == "partition.distribution"
    assert field_for("model.kwargs.depth", keys) == "model.name"
    assert field_for(None, keys) is None and field_for("grid.x", keys) is None


ASYNC_ONLY = ("server.concurrency", "server.buffer_size", "server.staleness", "server.max_staleness",
              "server.max_lag")
SYNC_ONLY = ("grid.quorum", "grid.overcommit", "grid.overlap_rounds")


def _shown(panel, key) -> bool:
    return panel.rows[key].layout.display != "none"


def test_only_the_fields_of_the_chosen_mode_are_shown():
    panel = ConfigPanel()
    assert panel.widgets["server.mode"].value == "sync"
    assert not any(_shown(panel, k) for k in ASYNC_ONLY), [k for k in ASYNC_ONLY if _shown(panel, k)]
    assert panel.param_boxes["server.staleness"].layout.display == "none"   # its parameters too
    assert all(_shown(panel, k) for k in SYNC_ONLY)
    panel.widgets["server.mode"].value = "async"
    assert all(_shown(panel, k) for k in ASYNC_ONLY)
    assert panel.param_boxes["server.staleness"].layout.display != "none"
    assert not any(_shown(panel, k) for k in SYNC_ONLY)
    assert panel.valid and panel.config.server.mode == "async"


def test_labels_are_whole_words_with_units():
    from fedjax_grid.widgets.fields import label
    panel = ConfigPanel()
    for key, widget in panel.widgets.items():
        spec = panel.specs[key]
        assert widget.description == label(spec), key
        assert "_" not in widget.description, key
    assert panel.widgets["grid.deadline_s"].description == "deadline (s)"
    assert panel.widgets["server.bn_calibration_examples"].description == "bn calibration examples"
    # the longest label fits its box: 190 px at ~7.5 px per character of the 13 px font
    longest = max((w.description for w in panel.widgets.values()), key=len)
    assert len(longest) * 7.5 <= 190, longest


@pytest.mark.parametrize("key, value, allowed", [
    ("grid.quorum", "1.5", "[0, 1]"),  # a text box: a fraction or auto
    ("faults.dropout_prob", -0.2, "[0, 1]"),
    ("grid.workers", 0, "[1, 256]"),
    ("partition.num_clients", 10 ** 9, "[1, 1000000]"),
])
def test_out_of_range_values_are_refused_with_the_range_not_clamped(key, value, allowed):
    panel = ConfigPanel()
    if key.startswith("faults."):
        panel.widgets["faults.enabled"].value = True
    panel.widgets[key].value = value
    assert panel.widgets[key].value == value            # kept as typed, not clamped
    assert not panel.valid and panel.error_field == key
    assert allowed in panel.messages[key].value, panel.messages[key].value
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        panel.config


def test_model_kwargs_of_another_model_name_the_models_real_fields(tmp_path):
    import json
    cfg = get_preset("paper-mobilenetv3-tinyimagenet-independent").to_dict()
    cfg["model"]["kwargs"] = {"width": 0.25}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    panel = ConfigPanel()
    panel.path.value = str(path)
    panel.load_button.click()
    import html
    text = html.unescape(panel.status.value)
    assert "'model.kwargs.width'" in text and "width_multiplier" in text, text
    assert panel.error_field in ("model.name", "model.kwargs.width")   # beside a model field
    assert "width_multiplier" in panel.messages[panel.error_field].value


def test_the_default_file_is_under_runs_which_git_ignores():
    panel = ConfigPanel()
    assert panel.path.value.startswith("runs/")
