# %% [markdown]
# # 06 · Heterogeneity and faults: slow, offline and failing desktops
#
# Faults are simulated inside real tasks on real workers (`fedjax_grid.hazards.faults`):
# per-client slow-down factors, offline clients, random delays, drop-outs (the task
# raises), corrupted (NaN) updates, hangs. A round deadline cuts stragglers (`late`),
# the quorum decides whether a round counts, retries re-submit failed tasks, and
# invalid updates are `rejected`. The scenarios below run on one cluster and are
# compared on one figure.

# %% tags=["parameters"]
# Parameters: small by default; scale up here.
NAME = "06_heterogeneity_and_faults"
ROUNDS = 2
NUM_CLIENTS = 4
WIDTH = 0.125
WORKERS = 2
MAX_TEST_EXAMPLES = 256
SLOWDOWN = 4.0            # slowest client trains this many times slower
DEADLINE_FACTOR = 1.5     # deadline = this x the baseline round time
SCHEDULER = None
OUT_ROOT = "../runs/notebooks"
EMULATE = True            # the emulated-grid section at the end (Linux + root; ~1-2 min)

# %%
from fedjax_grid import notebook_dir

OUT = notebook_dir(OUT_ROOT, NAME)   # OUT_ROOT/NAME-YYYYmmdd-HHMMSS

# %%
from fedjax_grid import get_preset, scaled_down

base = scaled_down(get_preset("quickstart"), model_kwargs={"width": WIDTH, "norm": "batch", "head": "cifar"},
                   clients=NUM_CLIENTS, rounds=ROUNDS, max_test_examples=MAX_TEST_EXAMPLES,
                   workers=WORKERS, scheduler=SCHEDULER)
cfg = base

# %%
from IPython.display import HTML, display

from fedjax_grid import dashboard_html, open_cluster

# 127.0.0.1 only (nothing listens on other interfaces); SCHEDULER set: a running grid.
grid = open_cluster(cfg.grid, local_directory=str(OUT / "dask"))
display(HTML(dashboard_html(grid)))

# %% [markdown]
# Compilation happens once per worker process and model: a one-round warm-up first, so that
# no scenario below is charged for it and their times compare fairly whatever their order
# (the deadline below is derived from the baseline's rounds, not from a compiling one).

# %%
from fedjax_grid import FederatedRun, RoundBar, slug

one_each = min(NUM_CLIENTS, len(grid.workers()))   # one task per worker compiles everywhere
warm = FederatedRun(base.with_overrides(["training.rounds=1", f"training.clients_per_round={one_each}"]),
                    out_dir=OUT / "warm-up", grid=grid)
warm.run(callback=RoundBar(warm, desc="warm-up (compiles the model)"))

# %%
import pandas as pd

from fedjax_grid import concat_runs, faults

results, modes = {}, {}


def run_scenario(name, sets):
    """Run one scenario on the grid, in OUT/<name without spaces or commas>, with a bar."""
    cfg = base.with_overrides(sets) if sets else base
    run = FederatedRun(cfg, out_dir=OUT / slug(name), grid=grid)
    results[name], modes[name] = run.run(callback=RoundBar(run, desc=name)), cfg.server.mode


def summary():
    """One row per scenario: final accuracy, wall time without compilation (compile s
    apart), median round, and its tasks by status."""
    rows = []
    for name, rec in results.items():
        r, t = rec.rounds(), rec.tasks()
        rows.append({"scenario": name, "mode": modes[name], "rounds": len(r),
                     "final accuracy %": round(100 * r["global_accuracy"].iloc[-1], 1),
                     "wall time s": round(r["elapsed_s"].iloc[-1] - r["compile_s"].sum(), 1),
                     "compile s": round(r["compile_s"].sum(), 1),
                     "median round s": round(r["round_time_s"].median(), 1),
                     **t["status"].value_counts().to_dict()})
    return pd.DataFrame(rows).set_index("scenario").fillna(0)


run_scenario("baseline", [])
base_round = float(results["baseline"].rounds()["round_time_s"].median())
deadline = round(max(1.0, DEADLINE_FACTOR * base_round), 2)
print(f"baseline round {base_round:.1f} s (median): deadline for the next scenarios {deadline} s")

# %% [markdown]
# The slow-down factors each client gets (fixed for the run):

# %%
slow = base.with_overrides(["faults.enabled=true", f"faults.max_slowdown={SLOWDOWN}"])
pd.Series({k: faults.speed_factor(slow.faults, slow.seed, k) for k in range(NUM_CLIENTS)},
          name="speed factor").to_frame().T

# %% [markdown]
# The scenarios. A failing task is recorded (`failed`, with its reason) and retried; its
# worker's log line is left out of the notebook (simulated faults only). Each scenario ends
# as one row of the table below.

# %%
run_scenario("slow, no deadline", ["faults.enabled=true", f"faults.max_slowdown={SLOWDOWN}"])
run_scenario("slow, deadline", ["faults.enabled=true", f"faults.max_slowdown={SLOWDOWN}",
                                f"grid.deadline_s={deadline}", "grid.quorum=0.25"])
run_scenario("offline + drop-outs, quorum 0.5", [
    "faults.enabled=true", "faults.offline_prob=0.25", "faults.dropout_prob=0.3",
    "grid.retries=1", "grid.quorum=0.5"])
run_scenario("faulty (NaN) updates", ["faults.enabled=true", "faults.error_prob=0.3",
                                      "grid.retries=0", "grid.quorum=0.25"])
summary()

# %% [markdown]
# ## Without a barrier: asynchronous buffered aggregation (FedBuff)
#
# `server.mode=async` keeps `server.concurrency` tasks in flight; every
# `server.buffer_size` deltas that arrive make one server update (a new global
# version), each weighted by its staleness (`server.staleness`, here
# (1 + s)^-0.5). A slow desktop no longer holds the others: its delta arrives
# later, on an older version. `training.rounds` counts server updates, so the
# async run below folds as many client updates as the synchronous one.

# %%
half = max(1, NUM_CLIENTS // 2)
run_scenario("slow, async (FedBuff)", [
    "faults.enabled=true", f"faults.max_slowdown={SLOWDOWN}", "server.mode=async",
    f"server.concurrency={NUM_CLIENTS}", f"server.buffer_size={half}",
    "server.staleness=polynomial(0.5)", f"training.rounds={ROUNDS * NUM_CLIENTS // half}"])
rounds = concat_runs({n: r.rounds() for n, r in results.items()})   # a leading run column
tasks = concat_runs({n: r.tasks() for n, r in results.items()})
summary()

# %% [markdown]
# ## Compared on one figure
# Against wall time: the asynchronous run's "rounds" are server versions, not barriers.

# %%
from fedjax_grid import plots

plots.compare_runs(rounds, metric=["global_accuracy", "round_time_s"], modes=modes,
                   title="fault scenarios", save=OUT / "scenarios.png")

# %%
status = tasks.pivot_table(index="run", columns="status", values="client", aggfunc="count", fill_value=0)
status.loc[list(results)]

# %%
quorum = rounds.pivot_table(index="run", values=["quorum", "clients_ok", "round_time_s"], aggfunc="mean")
quorum.loc[list(results)]

# %%
plots.worker_timeline(tasks, run="slow, deadline", save=OUT / "timeline_deadline.png")

# %%
plots.worker_timeline(tasks, run="offline + drop-outs, quorum 0.5")

# %% [markdown]
# The asynchronous run: each bar names the global version its task started from, and
# the tasks table says how stale each delta was when it arrived.

# %%
plots.worker_timeline(tasks, run="slow, async (FedBuff)", save=OUT / "timeline_async.png")

# %%
tasks[tasks["run"] == "slow, async (FedBuff)"][["round", "client", "version", "staleness", "status"]]

# %%
plots.time_to_accuracy(rounds[rounds["run"].isin(["slow, no deadline", "slow, deadline",
                                                  "slow, async (FedBuff)"])])

# %% [markdown]
# ## Slow links: compressed updates and broadcasts
#
# `faults.link` gives each desktop a seeded up/down bandwidth and latency (here the
# `home` preset: 10/50 Mbit/s, each desktop x[1/4, 4]); every task sleeps its transfer
# time (`transfer_s` in the tasks table). `server.codec` encodes the clients' deltas
# (`quant(3)`: 3-bit unbiased stochastic rounding, ~10x fewer bytes) and
# `server.broadcast=delta` sends each desktop only the change since the version it
# holds, encoded with `server.broadcast_codec` (the first round sends the model once).
# `bytes_in` / `bytes_out` are what each task downloaded and uploaded.

# %%
links = {}
for name, sets in {
    "home link, float32": [],
    "home link, quant(3) both ways": ["server.codec=quant(3)", "server.broadcast=delta",
                                      "server.broadcast_codec=quant(3)"],
}.items():
    run = FederatedRun(base.with_overrides(["faults.link=home"] + sets), out_dir=OUT / slug(name),
                       grid=grid)
    links[name] = run.run(callback=RoundBar(run, desc=name))
link_rounds = concat_runs({n: r.rounds() for n, r in links.items()})
link_tasks = concat_runs({n: r.tasks() for n, r in links.items()})
link_tasks.pivot_table(index=["run", "round"], values=["bytes_in", "bytes_out", "transfer_s", "duration_s"],
                       aggfunc="mean").round(2)

# %%
plots.time_to_accuracy(link_rounds, save=OUT / "links_time_to_accuracy.png")

# %% [markdown]
# ## The same hazards on an emulated grid: real CPU shares, real bytes on a shaped link
#
# Everything above is *modelled* inside the worker processes: a slow desktop sleeps
# (factor - 1) x its training time, a home link sleeps the time its bytes would take.
# Both workers still share this machine's cores as equals, and no byte crosses a slow
# link. `fedjax_grid.emulation` (Linux, root) makes the desktops real: each is a
# `dask worker` in its own network namespace behind a veth pair whose two directions
# are rate-limited (`tc tbf`), in its own cgroup with a CPU quota and a memory limit
# (and a freezer), reached over TLS -- what `fedjax-grid grid up` starts. Below: one
# desktop with a whole core on a fast link, one with a quarter of a core on a home link
# (16 Mbit/s down, 1 Mbit/s up), and the compressed run of the previous section on them.
# Where this machine cannot (no root, no network namespaces, no tbf, no cgroups) the
# section is skipped with one line saying what is missing.

# %%
from fedjax_grid import EmulatedGrid, emulation

EMULATED_DESKTOPS = {"desktops": 2, "machines": [
    {"kind": "office", "cpu": 1.0, "memory": "2GiB", "down": "100Mbit", "up": "100Mbit"},
    {"kind": "home", "cpu": 0.25, "memory": "2GiB", "down": "16Mbit", "up": "1Mbit"}]}
why_not = emulation.skip_reason() if EMULATE else "EMULATE = False in the parameters cell"
print(f"emulated-grid section skipped: {why_not}" if why_not else
      "this machine can emulate a grid: the desktops start now")

# %%
emulated = None
if not why_not:
    with EmulatedGrid(EMULATED_DESKTOPS) as egrid:
        desktops = egrid.status()[["name", "kind", "cpu", "up_bps", "down_bps"]]
        with egrid.entered():   # this kernel's thread joins the grid's network
            cfg_e = base.with_overrides([
                f"grid.scheduler={egrid.address}", f"grid.tls_dir={egrid.tls_dir}",
                "server.codec=quant(3)", "server.broadcast=delta", "server.broadcast_codec=quant(3)"])
            erun = FederatedRun(cfg_e, out_dir=OUT / "emulated", notify=lambda m: None)
            try:
                emulated = erun.run(callback=RoundBar(erun, desc="emulated grid, quant(3) both ways"))
            finally:
                erun.close()
    # leaving the with block removed every namespace, link, cgroup and process it made
    display(desktops)

# %% [markdown]
# Per desktop: the same client work takes ~4x longer on the quarter core (a real CPU
# quota, compilation included in round 1), and its upload crosses a real 1 Mbit/s link.
# `bytes_in` / `bytes_out` are the task's payloads; the round time is set by the slow
# desktop unless a deadline, overcommit or `server.mode=async` says otherwise.

# %%
if emulated is not None:
    etasks = emulated.tasks()
    display(etasks.groupby("worker_name").agg(
        tasks=("client", "size"), ok=("status", lambda s: int((s == "ok").sum())),
        median_task_s=("duration_s", "median"), mean_bytes_in=("bytes_in", "mean"),
        mean_bytes_out=("bytes_out", "mean")).round(2))
    display(plots.worker_timeline(etasks, save=OUT / "timeline_emulated.png"))

# %% [markdown]
# Which one to use: the modelled hazards (`faults.*`) run anywhere, in seconds, and are
# seeded and exactly repeatable -- use them to explore policies (deadlines, quorum,
# async) over many settings. The emulated grid (`fedjax-grid grid up`, or `EmulatedGrid`
# here) needs Linux and root and runs in real time -- use it to check that what the model
# predicts happens to real processes: CPU contention, TCP over a slow or dropped link,
# frozen and killed desktops, timeouts. docs/ARCHITECTURE.md ("Heterogeneity: modelled vs
# emulated") says what each one covers.

# %%
grid.close()
