"""An experiment through `fedjax-grid run --scheduler` on separately started
`dask scheduler` and `dask worker` processes (127.0.0.1 only)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dask_exe():
    exe = shutil.which("dask") or os.path.join(os.path.dirname(sys.executable), "dask")
    if not os.path.exists(exe):
        pytest.skip("the `dask` command is not installed")
    return exe


@pytest.fixture
def external_grid(tmp_path):
    """A `dask scheduler` and two `dask worker` processes; stopped by PID afterwards."""
    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen(
        [dask_exe(), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--dashboard-address", "127.0.0.1:0", "--no-show"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "scheduler.log", "w"))]
    for i in range(2):
        procs.append(subprocess.Popen(
            [dask_exe(), "worker", addr, "--host", "127.0.0.1", "--nthreads", "1",
             "--no-dashboard", "--local-directory", str(tmp_path / f"w{i}"), "--name", f"desktop-{i}"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"worker{i}.log", "w")))
    yield addr, procs
    for p in procs:  # only the processes this test started
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def test_run_through_external_scheduler(external_grid, tmp_path):
    addr, procs = external_grid
    from distributed import Client
    with Client(addr, timeout=60) as c:  # wait for both desktops to join
        c.wait_for_workers(2, timeout=60)
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "fedjax_grid.cli", "run", "--scheduler", addr, "--out", str(out),
         "--quiet", "--set", "training.rounds=2", "--set", "data.max_test_examples=256",
         "--set", "model.kwargs={width: 0.125, norm: batch, head: cifar}"],
        capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "final global accuracy" in r.stdout
    tasks = pd.read_csv(out / "tasks.csv")
    rounds = pd.read_csv(out / "rounds.csv")
    assert len(rounds) == 2 and (rounds["clients_ok"] == 4).all()
    assert tasks["worker"].str.startswith("tcp://127.0.0.1:").all()
    assert (out / "global_accuracy.png").exists() and (out / "local_loss.png").exists()
    assert all(p.poll() is None for p in procs)  # the grid outlives the experiment
