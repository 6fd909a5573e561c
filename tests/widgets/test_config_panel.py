"""ConfigPanel: widgets <-> ExperimentConfig, validation messages in place, JSON files."""
import dataclasses

import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.experiments import ExperimentConfig, get_preset
from fedjax_grid.experiments import config as C
from fedjax_grid.widgets import ConfigPanel, field_specs
from fedjax_grid.widgets.fields import error_key


def test_every_config_field_has_a_widget_and_choices_come_from_config():
    panel = ConfigPanel()
    cfg = ExperimentConfig()
    leaves = ["name", "seed", "out_dir"] + [
        f"{s}.{f.name}" for s in ("model", "data", "partition", "training", "server", "grid",
                                   "faults") for f in dataclasses.fields(getattr(cfg, s))]
    assert sorted(panel.widgets) == sorted(leaves)
    assert panel.widgets["model.name"].options == C.MODELS
    assert panel.widgets["data.source"].options == C.SOURCES
    assert panel.widgets["partition.distribution"].options == C.DISTRIBUTIONS
    assert panel.widgets["partition.forming"].options == C.FORMING
    kinds = {s.key: s.kind for s in field_specs()}
    assert kinds["training.augment"] == "bool" and kinds["partition.num_clients"] == "int"
    assert kinds["partition.beta"] == "slider" and kinds["model.kwargs"] == "mapping"
    assert kinds["grid.deadline_s"] == "optional"


def test_widget_values_make_the_cli_config():
    panel = ConfigPanel(get_preset("quickstart"))
    assert panel.config == get_preset("quickstart")
    w = panel.widgets
    w["model.name"].value = "vgg16"
    w["model.kwargs"].value = "{width: 0.125, norm: batch, head: cifar}"
    w["partition.distribution"].value = "balanced"
    w["partition.beta"].value = 0.7
    w["partition.forming"].value = "hybrid"
    w["partition.keep"].value = 0.25
    w["partition.num_clients"].value = 6
    w["training.clients_per_round"].value = "3"
    w["training.lr"].value = 0.02
    w["training.augment"].value = True
    w["grid.deadline_s"].value = "12.5"
    w["faults.enabled"].value = True
    w["faults.dropout_prob"].value = 0.1
    cfg = panel.config
    expected = get_preset("quickstart").with_overrides([
        "model.name=vgg16", "model.kwargs={width: 0.125, norm: batch, head: cifar}",
        "partition.distribution=balanced", "partition.beta=0.7", "partition.forming=hybrid",
        "partition.keep=0.25", "partition.num_clients=6", "training.clients_per_round=3",
        "training.lr=0.02", "training.augment=true", "grid.deadline_s=12.5",
        "faults.enabled=true", "faults.dropout_prob=0.1"]).validate()
    assert cfg == expected
    assert cfg.fingerprint() == expected.fingerprint()
    w["grid.deadline_s"].value = ""  # empty box: None
    assert panel.config.grid.deadline_s is None


@pytest.mark.parametrize("key,value,needle", [
    ("partition.num_clients", 0, "partition.num_clients=0"),
    ("training.lr", -1.0, "training.lr=-1.0"),
    ("training.clients_per_round", "9", "training.clients_per_round=9"),
    ("training.clients_per_round", "many", "training.clients_per_round='many'"),
    ("model.kwargs", "[1, 2", "model.kwargs="),
    ("grid.retries", 1000, "grid.retries=1000"),
    ("partition.alpha", 0.0, "partition.alpha=0.0"),
])
def test_invalid_value_shows_message_next_to_field(key, value, needle):
    panel = ConfigPanel()
    if key == "partition.alpha":
        panel.widgets["partition.distribution"].value = "dirichlet"
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
    assert panel.valid and panel.messages[key].value == ""


def test_fields_shown_only_when_relevant():
    panel = ConfigPanel()
    shown = lambda k: panel.rows[k].layout.display != "none"  # noqa: E731
    dist = panel.widgets["partition.distribution"]
    for kind, field in (("balanced", "beta"), ("dirichlet", "alpha"),
                        ("shards", "shards_per_client"), ("quantity", "sigma")):
        dist.value = kind
        assert shown(f"partition.{field}")
        assert [f for f in ("beta", "alpha", "shards_per_client", "sigma")
                if shown(f"partition.{f}")] == [field]
    dist.value = "iid"
    assert not any(shown(f"partition.{f}") for f in ("beta", "alpha", "shards_per_client", "sigma"))
    panel.widgets["partition.forming"].value = "static"
    assert not shown("partition.keep")
    panel.widgets["partition.forming"].value = "hybrid"
    assert shown("partition.keep")
    assert not shown("faults.dropout_prob")
    panel.widgets["faults.enabled"].value = True
    assert shown("faults.dropout_prob")


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


def test_set_config_with_a_bad_choice_is_reported():
    panel = ConfigPanel()
    bad = dataclasses.replace(get_preset("quickstart"))
    bad.model.name = "resnet50"
    panel.set_config(bad)
    assert panel.error_field == "model.name" and "resnet50" in panel.error


def test_error_key_parsing():
    keys = {s.key for s in field_specs()}
    assert error_key("training.lr=0 is invalid: a number > 0 is required", keys) == "training.lr"
    assert error_key("seed=-1 is invalid: an integer >= 0 is required", keys) == "seed"
    assert error_key("something else entirely", keys) is None
