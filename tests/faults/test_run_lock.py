"""Two runs on one --out (real CLI processes on a real scheduler and worker, 127.0.0.1).

While a run holds its folder, a second `fedjax-grid run` on the same --out (another
config) is refused with one line, exit 2, and the first run's files are untouched; after
a `kill -9` of the holder the OS has dropped its fcntl lock, so `--resume` proceeds.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from fedjax_grid.grid.checkpoint import latest_checkpoint
from fedjax_grid.grid.runlock import LOCK_NAME
from tests.faults.conftest import ExternalGrid, run_cli, stop
from tests.faults.test_grid_faults import TINY


def _args(address, out, *extra):
    sets = [a for s in (*TINY, "training.rounds=3", "faults.enabled=true",
                        "faults.max_delay_s=2", *extra) for a in ("--set", s)]
    return ["run", "--scheduler", address, "--quiet", "--no-plots", "--out", str(out), *sets]


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and "dask" not in p.parts}


@pytest.mark.slow
def test_second_run_refused_and_kill9_lock_does_not_block(tmp_path):
    g = ExternalGrid(tmp_path)
    g.start_scheduler()
    g.start_worker()
    out = tmp_path / "out"
    first = None
    try:
        g.wait_for(1)
        first = subprocess.Popen([sys.executable, "-m", "fedjax_grid.cli", *_args(g.address, out)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.time() + 240
        while time.time() < end and latest_checkpoint(out / "checkpoints") is None:
            assert first.poll() is None
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGSTOP)  # hold it still while we look at its files
        before = _snapshot(out)
        second = run_cli(*_args(g.address, out, "training.lr=0.01"), timeout=120)
        after = _snapshot(out)
        assert second.returncode == 2, second.stderr[-2000:]
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert second.stderr.startswith("error: --out ") and "in use by another run" in second.stderr
        assert after == before  # the refused run wrote nothing, changed nothing
        os.kill(first.pid, signal.SIGKILL)  # its lock stays on disk, the OS drops the fcntl lock
        first.wait(timeout=10)
        assert (out / LOCK_NAME).exists()
        third = run_cli(*_args(g.address, out), "--resume", timeout=300)
        assert third.returncode == 0, third.stderr[-2000:]
    finally:
        if first is not None and first.poll() is None:
            first.kill()
        stop(g.workers + [g.scheduler], timeout=5)
    assert list(pd.read_csv(out / "rounds.csv")["round"]) == [1, 2, 3]  # rounds count from 1
    assert json.loads((out / "config.json").read_text())["training"]["lr"] == 0.05


_HOLDER = """
import sys, time
from fedjax_grid.grid.runlock import RunFolderLock
lock = RunFolderLock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(600)
"""


def test_lock_of_a_kill9ed_process_does_not_block_and_cli_is_refused_meanwhile(tmp_path):
    """Quick form: a real process holds the lock; `fedjax-grid run` on that --out is refused
    (one line, exit 2, nothing written); after its kill -9 the lock is free at once."""
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = run_cli("run", "--out", out, "--quiet", "--no-plots", timeout=120)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr[-2000:]
        assert "in use by another run" in r.stderr and "Traceback" not in r.stderr
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
    from fedjax_grid.grid.runlock import RunFolderLock
    lock = RunFolderLock(out)
    lock.acquire()  # never waits (timeout 0): RunFolderBusy if the dead holder still held it
    assert lock.held
    lock.release()
