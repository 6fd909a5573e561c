"""Issue 23's failure mode, on a real 1 Mbit/s uplink (slow; root).

One emulated home desktop (half a core, uplink 1 Mbit/s) and the float32 quickstart:
a 2.3 MB update needs ~19 s on that link. Today every task is recorded 'late'
("result not fetched in time (worker unresponsive)"), no update is folded, and the
run still exits 0 at chance accuracy. What issue 23 item 5 asks for: the run learns,
or is refused up front with the transfer-time estimate. Marked ``xfail(strict=True)``
until the engine does that: the day it does, this test XPASSes and fails, and the
marker goes.
"""
import subprocess
import sys

import pandas as pd
import pytest

from tests.emulation.conftest import require_emulation

pytestmark = pytest.mark.slow


@pytest.mark.xfail(strict=True, reason="issue 23 item 5: a slow link is taken for an "
                                       "unresponsive desktop; nothing is folded, exit 0")
def test_float32_quickstart_on_a_1_mbit_uplink_learns_or_is_refused(tmp_path):
    require_emulation()
    from fedjax_grid.emulation import EmulatedGrid, profiles
    profile = profiles.from_dict({"desktops": 1, "machines": [
        {"kind": "home", "cpu": 0.5, "memory": "3GiB", "down": "16Mbit", "up": "1Mbit"}]}, "home-1")
    out = tmp_path / "run"
    with EmulatedGrid(profile) as g:
        r = subprocess.run([sys.executable, "-m", "fedjax_grid.cli", "run", "--scheduler", g.address,
                            "--out", str(out), "--quiet", "--no-plots", "--set", "training.rounds=2"],
                           capture_output=True, text=True, timeout=1800)
    if r.returncode == 2:  # refused up front: one line with the transfer-time estimate
        err = r.stderr.strip()
        assert "\n" not in err and "Mbit" in err and " s" in err, err
        return
    assert r.returncode == 0, r.stderr[-2000:]
    rounds = pd.read_csv(out / "rounds.csv")
    assert rounds["clients_ok"].sum() > 0, pd.read_csv(out / "tasks.csv")[["status", "reason"]]
    assert rounds["global_accuracy"].iloc[-1] > 0.5
