"""`grid up` killed with SIGKILL half-way, then `grid down`: nothing of the grid is left
(root; skipped with the one-line reason elsewhere)."""
import json
import os
import signal
import subprocess
import sys
import time

from tests.emulation.conftest import leftovers, require_emulation


def _cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "fedjax_grid.cli", *args], capture_output=True,
                          text=True, timeout=120, **kwargs)


def _state_with_a_worker(grids_dir):
    """The state file of the grid being made, once its first worker has been started."""
    for path in grids_dir.glob("fjg*.json"):
        try:
            state = json.loads(path.read_text())
        except ValueError:
            continue
        if state["desktops"] and state["desktops"][0].get("proc"):
            return state
    return None


def test_down_after_up_was_killed_midway(grids_dir):
    require_emulation()
    up = subprocess.Popen([sys.executable, "-m", "fedjax_grid.cli", "grid", "up", "--profile",
                           "office", "--desktops", "1", "--no-schedule"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 120
        while (state := _state_with_a_worker(grids_dir)) is None and time.monotonic() < end:
            assert up.poll() is None, up.stdout.read()
            time.sleep(0.1)
        assert state is not None, "grid up never started a worker"
        os.kill(up.pid, signal.SIGKILL)  # half-way: scheduler and a worker started, not all
        up.wait(10)
    finally:
        if up.poll() is None:
            up.kill()
    prefix = state["prefix"]
    time.sleep(1.0)
    assert leftovers(prefix), "the crash left nothing to clean up: the test did not test"
    r = _cli("grid", "status")
    assert prefix in r.stdout, r.stdout
    r = _cli("grid", "down", "--grid", prefix)
    assert r.returncode == 0 and f"grid {prefix} removed" in r.stdout, r.stdout + r.stderr
    assert leftovers(prefix) == []
    assert not (grids_dir / f"{prefix}.json").exists() and not (grids_dir / prefix).exists()
    r = _cli("grid", "down", "--all")
    assert r.returncode == 0 and "nothing to remove" in r.stdout
