"""Link speed model: seeded per-client bandwidth and latency, transfer times, presets."""
import dataclasses
import math

import numpy as np
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.hazards.links import LINKS, NO_LINK, LinkModel, link_of, transfer_seconds


def test_presets_registered():
    assert set(LINKS.names()) == {"none", "lan", "wifi", "home"}


def test_transfer_seconds():
    # VGG-16 CIFAR head in float32 (14.7 M params, 58.9 MB) over 1 Gbit/s: 0.47 s + latency.
    assert transfer_seconds(58_900_000, 1e9, 0.0005) == pytest.approx(0.4712 + 0.0005)
    assert transfer_seconds(0, 1e3, 5.0) == 0.0                 # nothing to send: no time
    assert transfer_seconds(10**9, math.inf, 0.02) == 0.02      # infinite link: latency only
    with pytest.raises(ValueError):
        transfer_seconds(10, 0.0)


def test_none_is_free_and_lan_is_nominal_for_everyone():
    for c in range(5):
        assert link_of("none", 0, c) == NO_LINK
        assert NO_LINK.upload_seconds(10**9) == 0.0 == NO_LINK.download_seconds(10**9)
        up, down, lat = link_of("lan", 3, c)
        assert (up, down, lat) == (1e9, 1e9, 0.0005)


def test_link_is_a_frozen_dataclass_that_unpacks():
    link = link_of("wifi", 0, 1)
    assert isinstance(link, LinkModel)
    with pytest.raises(dataclasses.FrozenInstanceError):
        link.up_bps = 1.0
    up, down, lat = link
    assert link.upload_seconds(1000) == pytest.approx(lat + 8000 / up)
    assert link.download_seconds(1000) == pytest.approx(lat + 8000 / down)
    assert link.to_dict() == {"up_bps": up, "down_bps": down, "latency_s": lat}


def test_seeded_per_client_and_independent_of_call_order():
    a = [link_of("wifi", 7, c) for c in range(50)]
    b = [link_of("wifi", 7, c) for c in reversed(range(50))][::-1]
    assert a == b
    assert len({link.up_bps for link in a}) == 50                  # clients differ
    assert a != [link_of("wifi", 8, c) for c in range(50)]          # seeds differ


@pytest.mark.parametrize("preset, up, down, lat, spread", [
    ("wifi", 50e6, 200e6, (0.010, 0.030), 2.0),
    ("home", 10e6, 50e6, (0.020, 0.060), 4.0),
])
def test_spread_is_log_uniform_around_the_nominal_link(preset, up, down, lat, spread):
    links = [link_of(preset, 0, c) for c in range(2000)]
    ups = np.array([link.up_bps for link in links])
    downs = np.array([link.down_bps for link in links])
    lats = np.array([link.latency_s for link in links])
    assert np.all((ups >= up / spread) & (ups <= up * spread))
    np.testing.assert_allclose(downs / ups, down / up)      # one quality factor, both ways
    assert np.all((lats >= lat[0]) & (lats <= lat[1]))
    # log-uniform: log(factor) / log(spread) uniform on [-1, 1] (mean 0, sd 1/sqrt(3));
    # over 2000 clients the standard error of the mean is 0.013.
    u = np.log(ups / up) / np.log(spread)
    assert abs(u.mean()) < 0.05 and abs(u.std() - 1 / math.sqrt(3)) < 0.03
    v = np.log(lats / lat[0]) / np.log(lat[1] / lat[0])
    assert abs(v.mean() - 0.5) < 0.03


def test_parameters_and_shorthand():
    link = link_of("wifi(up_mbit=20, spread=1, latency_ms_min=5, latency_ms_max=5)", 0, 0)
    assert link == LinkModel(20e6, 200e6, 0.005)
    assert link_of({"name": "home", "spread": 1.0}, 1, 2).up_bps == 10e6
    assert LINKS.validate("lan", "grid.link")["up_mbit"] == 1000.0


@pytest.mark.parametrize("spec, path, words", [
    ("dialup", "grid.link.name", "allowed are none, lan, wifi, home"),
    ("wifi(spread=0.5)", "grid.link.spread", "a finite number in [1, 100] is required"),
    ({"name": "lan", "up_mbit": 0}, "grid.link.up_mbit", "a finite number in [0.01, 1000000]"),
    ({"name": "lan", "latency_ms_max": 1e9}, "grid.link.latency_ms_max", "[0, 60000]"),
    ({"name": "home", "up_mbit": 0.5, "spread": 100}, "grid.link",
     "min(up_mbit, down_mbit) / spread = 0.005 Mbit/s, is below 0.01 Mbit/s"),
    ({"name": "home", "bandwidth": 3}, "grid.link.bandwidth", "unknown config key"),
    ({"name": "wifi", "latency_ms_min": 40}, "grid.link",
     "latency_ms_max=30.0 must be >= latency_ms_min=40.0"),
])
def test_bad_presets_give_one_line_user_errors_with_the_path(spec, path, words):
    with pytest.raises(UserError) as info:
        link_of(spec, 0, 0, path="grid.link")
    assert info.value.path == path
    assert "\n" not in str(info.value) and words in str(info.value)
