# %% [markdown]
# # 05 · A desktop grid: connect to a scheduler, see the desktops, run
#
# On a real grid, one machine runs `dask scheduler` and every desktop joins it with
# `dask worker tcp://SCHEDULER:8786 --name $(hostname)` (the name labels the desktop in
# tables and plots; see `fedjax-grid certs` for TLS). Give that
# address in `SCHEDULER_ADDRESS`. By default this notebook starts a scheduler and
# `DESKTOPS` workers itself, as subprocesses on 127.0.0.1, to show the same code, and
# stops exactly those processes at the end.

# %% tags=["parameters"]
# Parameters: small by default; scale up here.
NAME = "05_desktop_grid"
SCHEDULER_ADDRESS = None  # "tcp://HOST:8786" of your grid; None: start one here on 127.0.0.1
DESKTOPS = 2              # workers started here when SCHEDULER_ADDRESS is None
ROUNDS = 2
NUM_CLIENTS = 4
WIDTH = 0.125
MAX_TEST_EXAMPLES = 256
OUT_ROOT = "../runs/notebooks"

# %%
from fedjax_grid import notebook_dir

OUT = notebook_dir(OUT_ROOT, NAME)   # OUT_ROOT/NAME-YYYYmmdd-HHMMSS

# %%
import os
import shutil
import signal
import socket
import subprocess
import sys


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

started = []   # only these processes are stopped at the end
if SCHEDULER_ADDRESS is None:
    dask = shutil.which("dask") or os.path.join(os.path.dirname(sys.executable), "dask")
    port = free_port()
    SCHEDULER_ADDRESS = f"tcp://127.0.0.1:{port}"
    logs = OUT / "logs"
    logs.mkdir(exist_ok=True)
    started.append(subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--dashboard-address", "127.0.0.1:0", "--no-show"],
        stdout=subprocess.DEVNULL, stderr=open(logs / "scheduler.log", "w")))
    for i in range(DESKTOPS):
        started.append(subprocess.Popen(
            [dask, "worker", SCHEDULER_ADDRESS, "--host", "127.0.0.1", "--nthreads", "1",
             "--no-dashboard", "--name", f"desktop-{i}",
             "--local-directory", str(OUT / f"desktop-{i}")],
            stdout=subprocess.DEVNULL, stderr=open(logs / f"desktop-{i}.log", "w")))
    print("started PIDs", [p.pid for p in started], "scheduler", SCHEDULER_ADDRESS)

# %%
from fedjax_grid import get_preset

cfg = get_preset("quickstart").with_overrides([
    f"model.kwargs={{width: {WIDTH}, norm: batch, head: cifar}}",
    f"training.rounds={ROUNDS}", f"partition.num_clients={NUM_CLIENTS}",
    f"data.max_test_examples={MAX_TEST_EXAMPLES}",
    f"grid.scheduler={SCHEDULER_ADDRESS}", "grid.connect_timeout_s=60",
]).validate()
from fedjax_grid import open_cluster

grid = open_cluster(cfg.grid, local_directory=str(OUT / "dask"))
grid.client.wait_for_workers(DESKTOPS if started else 1, timeout=120)
print("plugin errors:", grid.plugin_errors or "none")

# %% [markdown]
# ## The attached desktops

# %%
from IPython.display import display

from fedjax_grid import ClusterPanel

panel = ClusterPanel(grid)   # one live table; panel.table is the same as a DataFrame
display(panel)

# %% [markdown]
# ## A run on them
# The client that runs the rounds is this notebook; the training happens on the desktops.

# %%
from fedjax_grid import FederatedRun, RoundBar

run = FederatedRun(cfg, out_dir=OUT / "run", grid=grid)
panel.records = run   # the table above counts this run's tasks, refreshed every round
records = run.run(callback=RoundBar(run, also=lambda row: panel.refresh()))   # a progress bar
tasks = records.tasks()
assert set(tasks["worker"]) <= set(grid.workers())

# %%
from fedjax_grid import plots

plots.worker_timeline(tasks, rounds=records.rounds(), save=OUT / "timeline.png")

# %%
# Desktops by name (dask worker --name), by address where a desktop has none.
desktop = tasks["worker_name"].fillna(tasks["worker"]).rename("desktop")
tasks.groupby(desktop)[["duration_s", "num_samples"]].agg(["count", "sum"])

# %% [markdown]
# ## Clean up
# Close the client; stop only the processes started above (by PID).

# %%
grid.close()
for p in started:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
for p in started:
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
print("stopped", [p.pid for p in started])
