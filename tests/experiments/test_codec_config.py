"""server.codec, server.broadcast_codec and faults.link: registry choices in the config."""
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.experiments import ExperimentConfig
from fedjax_grid.experiments import config as C


def test_defaults_are_none_and_registries_are_listed():
    cfg = ExperimentConfig()
    assert (cfg.server.codec.name, cfg.server.broadcast_codec.name, cfg.faults.link.name) == \
        ("none", "none", "none")
    assert {"server.codec", "server.broadcast_codec", "faults.link"} <= set(C.REGISTRIES)


def test_set_shorthand_and_parameters():
    cfg = ExperimentConfig().with_overrides(["server.codec=topk(0.01)", "server.broadcast_codec=bf16",
                                             "faults.link=wifi", "faults.link.up_mbit=20"])
    assert cfg.server.codec.name == "topk" and cfg.server.codec.fraction == 0.01
    assert cfg.server.broadcast_codec.name == "bf16"
    assert cfg.faults.link.name == "wifi" and cfg.faults.link.up_mbit == 20.0
    assert ExperimentConfig(**cfg.to_dict()).fingerprint() == cfg.fingerprint()


def test_bad_choices_are_located_errors():
    with pytest.raises(UserError, match="server.codec"):
        ExperimentConfig().with_overrides(["server.codec=zip"])
    with pytest.raises(UserError, match="server.broadcast_codec"):
        ExperimentConfig().with_overrides(["server.broadcast_codec=topk"])
    with pytest.raises(UserError, match="faults.link"):
        ExperimentConfig().with_overrides(["faults.link=5g"])


def test_default_codecs_leave_the_fingerprint_of_older_configs_unchanged():
    cfg = ExperimentConfig()
    d = cfg.to_dict()
    for section, key in (("server", "codec"), ("server", "broadcast_codec"), ("faults", "link")):
        d[section].pop(key)  # a config written before these keys existed
    assert ExperimentConfig(**d).fingerprint() == cfg.fingerprint()
    assert cfg.with_overrides(["server.codec=bf16"]).fingerprint() != cfg.fingerprint()
    assert cfg.with_overrides(["faults.link=home"]).fingerprint() != cfg.fingerprint()
