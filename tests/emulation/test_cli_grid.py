"""`fedjax-grid grid up / status / link-down / ... / down` as a user types them (root)."""
import re
import subprocess
import sys

import pytest

from tests.emulation.conftest import leftovers, require_emulation


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "fedjax_grid.cli", "grid", *args],
                          capture_output=True, text=True, timeout=300)


# suite budget (~19 s of CLI processes): the same grid's library path (up, limits, link and
# freeze actions, down) stays in the default run in test_emulated_grid.py
@pytest.mark.slow
def test_grid_up_status_actions_down():
    require_emulation()
    r = _cli("up", "--profile", "laptops", "--desktops", "1", "--seed", "4")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    m = re.fullmatch(r"scheduler: (tls://10\.\d+\.\d+\.1:8786)", lines[-1])  # the LAST line
    assert m, lines[-1]
    address = m.group(1)
    prefix = re.search(r"grid (fjg[0-9a-f]{4}):", r.stdout).group(1)
    try:
        desk = [ln for ln in lines if ln.startswith("  desk")]
        assert len(desk) == 1 and desk[0].endswith("running"), desk
        assert "cpu    50% of a core  memory    2GiB  down   30Mbit/s  up    8Mbit/s" in desk[0]
        assert "schedule: seed 4," in r.stdout and "freeze" in r.stdout
        assert _cli("link-down", "desk1", "--grid", address).stdout.strip() == "desk1: link-down"
        assert _cli("freeze", "desk1", "--grid", prefix).stdout.strip() == "desk1: frozen+link-down"
        status = _cli("status").stdout
        head = f"grid {prefix}: profile laptops, scheduler {address} running, replaying its schedule"
        assert head in status, status
        assert re.search(r"desk1 .* frozen\+link-down\n", status), status
        assert _cli("thaw", "desk1").stdout.strip() == "desk1: link-down"
        assert _cli("link-up", "desk1").stdout.strip() == "desk1: running"
        r = _cli("schedule", "--seed", "9")
        assert r.returncode == 0 and "schedule: seed 9," in r.stdout and "(time 0: now)" in r.stdout
        r = _cli("kill", "desk7")
        assert r.returncode == 2 and "unknown desktop 'desk7'" in r.stderr
    finally:
        r = _cli("down")
    assert r.returncode == 0 and f"grid {prefix} removed: 2 namespaces" in r.stdout, r.stdout + r.stderr
    assert leftovers(prefix) == []
