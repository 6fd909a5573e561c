"""A real 2-desktop emulated grid (root): limits, shaped links, CPU quota, freezer,
link down/up, kill/rejoin, a federated run through it, and a clean `down`.
Skipped with the one-line reason where the machine cannot emulate a grid."""
import os
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from fedjax_grid.emulation import measure, network, profiles, shaping
from tests.emulation.conftest import leftovers, require_emulation

PROFILE = {"desktops": 2, "machines": [
    {"kind": "a", "cpu": 0.5, "memory": "2GiB", "down": "16Mbit", "up": "4Mbit"},
    {"kind": "b", "cpu": 0.1, "memory": "2GiB", "down": "8Mbit", "up": "2Mbit"}]}


@pytest.fixture(scope="module")
def grid():
    require_emulation()
    from fedjax_grid.emulation import EmulatedGrid
    g = EmulatedGrid(profiles.from_dict(PROFILE, "test"))
    yield g
    g.close()


def _cgroup_value(g, name, controller, file):
    return (g.control.cgroup(name)._dir(controller) / file).read_text().split()


def test_desktops_have_their_limits_and_nothing_private_is_in_the_root_namespace(grid):
    rows = grid.status().set_index("name")
    assert rows["state"].tolist() == ["running", "running"]
    assert rows.loc["desk2", "cpu"] == 0.1 and rows.loc["desk1", "up_bps"] == 4e6
    for name, cpu in (("desk1", 0.5), ("desk2", 0.1)):
        d = grid.state.desktop(name)
        assert shaping.shaped_rate(d.netns, d.desktop_link) == d.up_bps
        assert shaping.shaped_rate(grid.state.hub_ns, d.hub_link) == d.down_bps
        g = grid.control.cgroup(name)
        if g.version == "v1":
            quota = int(_cgroup_value(grid, name, "cpu", "cpu.cfs_quota_us")[0])
            assert quota == cpu * 100_000
            assert int(_cgroup_value(grid, name, "memory", "memory.limit_in_bytes")[0]) == 2 ** 31
    workers = grid.wait_for(grid.desktops, 30)
    assert all(a.startswith(f"tls://{grid.state.desktop(n).address}:") for n, a in workers.items())
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        root_addrs = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr()]
    assert not any(a.startswith(network.PRIVATE_PREFIXES) for a in root_addrs), root_addrs
    assert not [n for n in network.links() if n.startswith(grid.prefix)]


@pytest.mark.parametrize("name", ["desk1", "desk2"])
def test_shaped_link_rates_both_directions(grid, name):
    d = grid.state.desktop(name)
    for direction, rate in (("up", d.up_bps), ("down", d.down_bps)):
        nbytes = int(rate / 8 * 2.5)  # ~2.5 s of the link
        got = measure.link_throughput(grid.state, name, direction, nbytes)
        assert 0.75 * rate <= got <= 1.25 * rate, (name, direction, got, rate)


@pytest.mark.parametrize("name", ["desk1", "desk2"])
def test_cpu_quota(grid, name):
    quota = grid.state.desktop(name).cpu
    share, free = measure.cpu_share(grid.state, name, 3.0)
    assert share <= 1.15 * quota + 0.02, (share, quota)
    assert share >= 0.5 * quota, (share, quota, free)
    if quota <= 0.25:
        assert free >= 2 * quota, (free, quota)  # the quota, not the machine, held it back


def test_freeze_and_thaw(grid):
    c = grid.client()
    try:
        addr = grid.wait_for(["desk1"])["desk1"]
        grid.freeze("desk1")
        assert grid.status().set_index("name").loc["desk1", "state"] == "frozen"
        cpu0 = grid.cpu_seconds("desk1")
        fut = c.submit(sum, [1, 2], workers=[addr], pure=False)
        time.sleep(2.0)
        assert not fut.done() and grid.cpu_seconds("desk1") - cpu0 < 0.01
        grid.thaw("desk1")
        assert fut.result(timeout=60) == 3
        assert grid.status().set_index("name").loc["desk1", "state"] == "running"
    finally:
        c.close()
    ev = grid.events(time.time() - 120)
    assert ev[ev["desktop"] == "desk1"]["event"].tolist()[-2:] == ["freeze", "thaw"]


def _connect(host, port, timeout=2.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return "connected"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return type(e).__name__


def test_link_down_is_silent_and_comes_back(grid):
    d = grid.state.desktop("desk2")
    port = int(grid.wait_for(["desk2"])["desk2"].rsplit(":", 1)[1])
    assert grid.run_in_hub(_connect, d.address, port) == "connected"
    grid.link_down("desk2", seconds=4.0)
    assert grid.status().set_index("name").loc["desk2", "state"] == "link-down"
    # frames are dropped, nothing is refused: the desktop just stops answering
    assert grid.run_in_hub(_connect, d.address, port, 1.5) == "timeout"
    time.sleep(4.0)
    assert grid.status().set_index("name").loc["desk2", "state"] == "running"
    assert grid.run_in_hub(_connect, d.address, port) == "connected"
    ev = grid.events(time.time() - 60)
    mine = ev[ev["desktop"] == "desk2"]
    assert mine["event"].tolist()[-2:] == ["link_down", "link_up"]
    assert mine["duration_s"].tolist()[-2] == 4.0
    assert 3.5 <= mine["time"].diff().iloc[-1] <= 6.0


@pytest.mark.slow
def test_kill_and_rejoin_with_the_same_name(grid):
    from fedjax_grid.emulation.attach import worker_names
    before = grid.wait_for(["desk2"])["desk2"]
    grid.kill("desk2")
    assert grid.status().set_index("name").loc["desk2", "state"] == "dead"
    end = time.monotonic() + 30
    while "desk2" in (worker_names(grid.state) or {}) and time.monotonic() < end:
        time.sleep(0.5)
    assert "desk2" not in worker_names(grid.state)
    grid.rejoin("desk2", wait_s=180)
    after = grid.wait_for(["desk2"])["desk2"]
    assert after != before and after.startswith(f"tls://{grid.state.desktop('desk2').address}:")
    assert grid.status().set_index("name").loc["desk2", "state"] == "running"


def test_the_profile_schedule_is_replayed_and_logged(grid):
    """The replayer applies a seeded schedule at its times (link down/up, freeze/thaw)."""
    from fedjax_grid.emulation import processes, schedule, state
    profile = profiles.from_dict({**PROFILE, "schedule": {
        "seed": 3, "start_after_s": 1, "horizon_s": 7,
        "link_down": {"every_s": 3, "duration_s": [1, 1.5]},
        "freeze": {"every_s": 4, "duration_s": [1, 1.5]}}}, "test")
    st = grid.state
    st.profile = profile.model_dump()
    state.save(st)
    grid.start_schedule(seed=3)  # time 0 now
    expected = schedule.timeline(schedule.draw(profile.schedule, grid.desktops, seed=3))
    assert len(expected) >= 4
    assert processes.wait_gone([st.procs["replay"]], expected[-1][0] + 30)
    ev = grid.events(st.schedule_t0)
    ev = ev[ev["source"] == "schedule"]
    assert list(zip(ev["desktop"], ev["event"])) == [(a[1], a[2]) for a in expected]
    lag = ev["time"].to_numpy() - st.schedule_t0 - [a[0] for a in expected]
    assert (lag >= -0.01).all() and (lag < 2.0).all(), lag
    assert grid.status()["state"].tolist() == ["running", "running"]


def test_quickstart_through_the_emulated_grid(grid, tmp_path):
    """`fedjax-grid run --scheduler ADDRESS` (the address as `grid up` prints it) on
    fast links: real bytes through the veths, TLS with the grid's certificates."""
    for d in grid.state.desktops:  # fast links and a core each for this run
        shaping.shape(d.netns, d.desktop_link, 1e9)  # (tbf replaced in place)
        shaping.shape(grid.state.hub_ns, d.hub_link, 1e9)
        grid.control.cgroup(d.name).set_cpu(1.0)
    out = tmp_path / "run"
    sent0 = _link_bytes(grid)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "fedjax_grid.cli", "run", "--scheduler", grid.address,
             "--out", str(out), "--quiet", "--no-plots", "--set", "training.rounds=2",
             "--set", "data.max_test_examples=256",
             "--set", "model.kwargs={width: 0.125, norm: batch, head: cifar}"],
            capture_output=True, text=True, timeout=900, env=dict(os.environ))
        sent = {k: v - sent0[k] for k, v in _link_bytes(grid).items()}
    finally:
        for d in grid.state.desktops:
            shaping.shape(d.netns, d.desktop_link, d.up_bps)
            shaping.shape(grid.state.hub_ns, d.hub_link, d.down_bps)
            grid.control.cgroup(d.name).set_cpu(d.cpu)
    assert r.returncode == 0, r.stderr[-2000:]
    rounds = pd.read_csv(out / "rounds.csv")
    tasks = pd.read_csv(out / "tasks.csv")
    assert rounds["global_accuracy"].iloc[-1] > 0.5, rounds
    assert (tasks["status"] == "ok").all()
    subnet = grid.state.desktop("desk1").address.rsplit(".", 1)[0]
    assert tasks["worker"].str.startswith(f"tls://{subnet}.").all()
    assert (tasks["bytes_in"] > 0).all()
    assert list(pd.read_csv(out / "grid_events.csv").columns)[:3] == ["time", "desktop", "event"]
    # The broadcast and the updates crossed each desktop's shaped veth (tbf counters):
    # the coordinator sits in the hub, so nothing went around the links. A desktop
    # receives each round's broadcast once, however many of its tasks use it (a task's
    # bytes_in counts it per task), and sends each update once.
    for name, by in tasks.groupby("worker_name"):
        assert sent[(name, "down")] >= by.groupby("round")["bytes_in"].max().sum(), (name, sent)
        assert sent[(name, "up")] >= by["bytes_out"].sum(), (name, sent)


def _cli_run(*args):
    return subprocess.run([sys.executable, "-m", "fedjax_grid.cli", "run", "--quiet", "--no-plots",
                           "--set", "data.max_test_examples=256",
                           "--set", "model.kwargs={width: 0.125, norm: batch, head: cifar}", *args],
                          capture_output=True, text=True, timeout=900, env=dict(os.environ))


@pytest.mark.slow
def test_resume_finds_the_emulated_grid_from_the_runs_config(grid, tmp_path):
    """`run --resume` without --scheduler: the run's config.json names the emulated grid,
    and the coordinator joins its hub namespace again."""
    out = tmp_path / "run"
    r = _cli_run("--scheduler", grid.address, "--out", str(out), "--set", "training.rounds=1")
    assert r.returncode == 0, r.stderr[-2000:]
    r = _cli_run("--resume", "--out", str(out), "--set", "training.rounds=2")
    assert r.returncode == 0 and "round 2/2" in r.stdout, r.stderr[-2000:]
    assert pd.read_csv(out / "rounds.csv")["round"].tolist() == [1, 2]


def _link_bytes(grid) -> dict:
    """(desktop, 'up'|'down') -> bytes its tbf qdiscs passed so far."""
    out = {}
    for d in grid.state.desktops:
        out[(d.name, "up")] = shaping.sent_bytes(d.netns, d.desktop_link)
        out[(d.name, "down")] = shaping.sent_bytes(grid.state.hub_ns, d.hub_link)
    return out


def test_down_removes_everything_and_is_idempotent(grid):
    prefix = grid.prefix
    assert leftovers(prefix)  # the grid exists
    grid.freeze("desk1")  # a frozen desktop and a dead link do not stop `down`
    grid.link_down("desk2")
    removed = grid.close()
    assert removed["namespaces"] == 3 and removed["cgroups"] >= 3
    assert leftovers(prefix) == []
    assert grid.close() == {"cgroups": 0, "namespaces": 0}
