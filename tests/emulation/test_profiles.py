"""Grid profiles and their availability schedules (no root needed)."""
import pytest

from fedjax_grid.emulation import profiles, schedule
from fedjax_grid.emulation.profiles import format_rate, load_profile, parse_bytes, parse_rate
from fedjax_grid.errors import UserError


def test_builtin_profiles_load_and_match_their_descriptions():
    names = profiles.list_profiles()
    assert {"office", "home", "laptops"} <= set(names)
    office, home, laptops = (load_profile(n) for n in ("office", "home", "laptops"))
    # office: equal desktops, fast links, always on
    assert len({(m.cpu, m.memory, m.up, m.down) for m in office.machines}) == 1
    assert office.machines[0].up >= 1e9 and office.schedule.empty
    # home: 16/1 Mbit-class links, CPU shares spread 5-8x
    cpus = [m.cpu for m in home.machines]
    assert 5 <= max(cpus) / min(cpus) <= 8
    assert all(m.down == 16e6 and m.up == 1e6 for m in home.machines)
    # laptops: Wi-Fi-class links, limited uptime (freeze, kill and rejoin, link drops)
    assert all(5e6 <= m.up <= 20e6 and 10e6 <= m.down <= 100e6 for m in laptops.machines)
    assert laptops.schedule.freeze and laptops.schedule.kill and laptops.schedule.link_down


@pytest.mark.parametrize("text, bps", [("16Mbit", 16e6), ("1 Mbit/s", 1e6), ("500kbit", 5e5),
                                       ("1Gbit", 1e9), (2_000_000, 2e6), ("1.5mbit", 1.5e6)])
def test_rates(text, bps):
    assert parse_rate(text) == bps


@pytest.mark.parametrize("text, n", [("2GiB", 2 * 2 ** 30), ("512MiB", 512 * 2 ** 20),
                                     ("1GB", 10 ** 9), (2 ** 30, 2 ** 30), ("1.5GiB", 3 * 2 ** 29)])
def test_memory_sizes(text, n):
    assert parse_bytes(text) == n


def test_format_rate():
    assert format_rate(16e6) == "16Mbit" and format_rate(1e9) == "1Gbit" and format_rate(5e5) == "500kbit"


BASE = {"machines": [{"cpu": 0.5, "memory": "1GiB", "down": "16Mbit", "up": "1Mbit"}]}


@pytest.mark.parametrize("change, message", [
    ({"machines": [{"cpu": 0.5, "memory": "1GiB", "down": "16Mbit", "up": "fast"}]},
     "machines.0.up='fast' is invalid: a rate like 16Mbit"),
    ({"machines": [{"cpu": 0, "memory": "1GiB", "down": "16Mbit", "up": "1Mbit"}]},
     "machines.0.cpu=0 is invalid"),
    ({"machines": [{"cpu": 0.5, "memory": "1MiB", "down": "16Mbit", "up": "1Mbit"}]},
     "machines.0.memory='1MiB' is invalid: a memory size of at least 64MiB"),
    ({"machines": [{"cpu": 0.5, "memory": "1GiB", "down": "16Mbit", "up": "1Mbit", "gpu": 1}]},
     "unknown key 'machines.0.gpu'"),
    ({"schedule": {"freeze": {"every_s": 60, "duration_s": [30, 10]}}},
     "schedule.freeze.duration_s=[30, 10] is invalid: [low, high] seconds"),
    ({"machines": []}, "machines=[] is invalid"),
    ({"desktops": 0}, "desktops=0 is invalid"),
    ({"machines": None}, "machines=None is invalid"),
])
def test_bad_profiles_are_one_line_errors_naming_the_value(change, message):
    with pytest.raises(UserError) as e:
        profiles.from_dict({**BASE, **change}, "mine")
    text = str(e.value)
    assert "\n" not in text and text.startswith("grid profile 'mine': ")
    assert message in text, text


def test_profile_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("machines: [\n")
    with pytest.raises(UserError, match=r"bad.yaml' is not valid YAML"):
        load_profile(str(bad))
    with pytest.raises(UserError, match="neither a built-in grid profile nor a file; allowed: home"):
        load_profile("no-such-profile")
    good = tmp_path / "lab.yaml"
    good.write_text("desktops: 2\nmachines:\n  - {cpu: 0.25, memory: 1GiB, down: 8Mbit, up: 2Mbit}\n")
    p = load_profile(str(good))
    assert p.name == "lab" and p.desktops == 2 and p.machine(5).up == 2e6


def test_schedule_is_seeded_and_deterministic():
    laptops = load_profile("laptops")
    names = ["desk1", "desk2", "desk3"]
    a = schedule.draw(laptops.schedule, names)
    assert a == schedule.draw(laptops.schedule, names)        # same seed, same events
    assert a != schedule.draw(laptops.schedule, names, seed=1)
    assert {e.kind for e in a} == {"link_down", "freeze", "kill"}
    assert {e.desktop for e in a} == set(names)
    s = laptops.schedule
    for e in a:
        assert s.start_after_s <= e.t < s.horizon_s
        lo, hi = getattr(s, e.kind).duration_s
        assert lo <= e.duration_s <= hi
    # desktop 1's events do not depend on how many desktops there are
    assert [e for e in a if e.desktop == "desk1"] == [
        e for e in schedule.draw(laptops.schedule, ["desk1"])]


def test_events_on_one_desktop_never_overlap_and_every_start_has_its_end():
    laptops = load_profile("laptops")
    events = schedule.draw(laptops.schedule, ["a", "b"], seed=7)
    for name in ("a", "b"):
        mine = [e for e in events if e.desktop == name]
        for first, second in zip(mine, mine[1:]):
            assert second.t >= first.t + first.duration_s - 1e-3
    actions = schedule.timeline(events)
    assert [a[0] for a in actions] == sorted(a[0] for a in actions)
    ends = {"link_down": "link_up", "freeze": "thaw", "kill": "rejoin"}
    for kind, end in ends.items():
        assert sum(a[2] == kind for a in actions) == sum(a[2] == end for a in actions)


def test_hazard_rate_matches_every_s():
    p = profiles.from_dict({**BASE, "schedule": {"start_after_s": 0, "horizon_s": 100_000,
                                                 "link_down": {"every_s": 100, "duration_s": [1, 1]}}},
                           "rate")
    events = schedule.draw(p.schedule, ["d"])
    assert 900 <= len(events) <= 1100  # ~ horizon / every_s (1-s events rarely overlap)
