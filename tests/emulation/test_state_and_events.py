"""Names, the state file and the event log (no root needed)."""
import json
import time

import pytest

from fedjax_grid.emulation import events, state
from fedjax_grid.emulation.naming import PREFIX_RE, Names, new_prefix


def test_names_are_prefixed_short_and_private():
    for _ in range(50):
        n = Names(new_prefix())
        assert PREFIX_RE.match(n.prefix)
        names = [n.hub_ns, n.bridge, n.desktop_ns(199), n.hub_link(199), n.desktop_link(199)]
        assert all(x.startswith(n.prefix) and len(x) <= 15 for x in names)  # IFNAMSIZ
        a, b, c, d = (int(x) for x in n.desktop_ip(199).split("."))
        assert a == 10 and d == 209  # RFC 1918, inside the grid's own /24
        assert n.scheduler_address == f"tls://{n.hub_ip}:8786"
    with pytest.raises(ValueError):
        Names("grid1")


def _state(prefix="fjg0a0b"):
    n = Names(prefix)
    return state.GridState(prefix=prefix, created=time.time(), profile_name="home", profile={},
                           seed=0, address=n.scheduler_address, hub_ns=n.hub_ns, bridge=n.bridge)


def test_state_file_round_trip_and_lookup_by_address():
    s = _state()
    state.save(s)
    assert state.load(s.prefix) == s
    assert state.find_by_address(s.address).prefix == s.prefix
    assert state.find_by_address(s.address.split("://")[1]).prefix == s.prefix  # without tls://
    assert state.find_by_address("tls://10.1.2.3:8786") is None
    assert [x.prefix for x in state.all_states()] == [s.prefix]
    state.forget(s.prefix)
    assert state.load(s.prefix) is None and state.all_states() == []


def test_a_damaged_state_file_is_skipped(grids_dir):
    (grids_dir / "fjg1111.json").write_text("{not json")
    assert state.load("fjg1111") is None and state.all_states() == []
    (grids_dir / "fjg1111.json").unlink()


def test_event_log_window_and_columns():
    s = _state("fjg0c0d")
    state.save(s)
    s.folder.mkdir(parents=True, exist_ok=True)
    try:
        for i, ev in enumerate(["link_down", "link_up", "freeze", "thaw"]):
            events.log_event(s.events_path, "desk1", ev, duration_s=5.0 if i % 2 == 0 else None,
                             source="schedule", t=1000.0 + i)
        with open(s.events_path, "a") as f:
            f.write('{"time": 1004, "desktop": "desk1", "ev')  # a line cut by a crash
        frame = events.grid_events(s.address, 1001.0, 1002.0)
        assert list(frame.columns) == events.COLUMNS
        assert frame["event"].tolist() == ["link_up", "freeze"]
        assert frame["time"].tolist() == [1001.0, 1002.0]
        assert len(events.grid_events(s.address, 0, 1e12)) == 4
        empty = events.grid_events("tcp://127.0.0.1:8786", 0, 1e12)
        assert empty.empty and list(empty.columns) == events.COLUMNS
        row = json.loads(s.events_path.read_text().splitlines()[0])
        assert row == {"time": 1000.0, "desktop": "desk1", "event": "link_down", "duration_s": 5.0,
                       "source": "schedule", "detail": ""}
    finally:
        state.forget(s.prefix)


def test_run_folder_gets_grid_events_csv(tmp_path):
    s = _state("fjg0e0f")
    state.save(s)
    s.folder.mkdir(parents=True, exist_ok=True)
    try:
        events.log_event(s.events_path, "desk2", "kill", duration_s=30.0, t=50.0)
        events.log_event(s.events_path, "desk2", "rejoin", t=80.0)
        path = events.save_run_events(s.address, tmp_path, 40.0, 70.0)
        assert path.read_text().splitlines() == [",".join(events.COLUMNS),
                                                 "50.0,desk2,kill,30.0,api,"]
        assert events.save_run_events("tcp://127.0.0.1:1", tmp_path / "x", 0, 1) is None
    finally:
        state.forget(s.prefix)


def test_netlink_calls_work_inside_a_running_event_loop():
    """A Jupyter kernel runs an asyncio loop in the thread that runs the cells; pyroute2's
    synchronous API cannot nest in it, so the emulation's netlink calls step aside."""
    import asyncio
    import sys
    if not sys.platform.startswith("linux"):
        pytest.skip("netlink is Linux only")

    from fedjax_grid.emulation import network

    async def in_a_cell():
        return network.links()

    assert "lo" in asyncio.run(in_a_cell())


def test_every_kernel_feature_probe_works_inside_a_running_event_loop():
    """What a notebook cell does first (``skip_reason()``), in a running asyncio loop as in
    a Jupyter kernel: namespaces, bridge, veth, tbf, port state and cgroups all tried and
    removed (before: the tbf step failed with 'This event loop is already running' and the
    notebook's emulated-grid section said the machine lacked sch_tbf)."""
    import asyncio

    from fedjax_grid.emulation import network, support
    reason = support.missing()
    if reason is not None:
        pytest.skip(reason)
    before = set(network.namespaces())

    async def in_a_cell():
        return support.probe()

    assert asyncio.run(in_a_cell()) is None
    assert set(network.namespaces()) == before
