"""Asynchronous (FedBuff) vs synchronous rounds on heterogeneous, intermittent desktops.

    python benchmarks/async_vs_sync.py                      # digits and the CIFAR-10 slice
    python benchmarks/async_vs_sync.py --data digits --budget 120

A LocalCluster of ``--workers`` single-thread workers, by default one per client (each
simulated desktop is its own worker process, as on a real grid; the simulated
slow-downs are sleeps, so a slow desktop holds its worker without using a core, as a
slow remote desktop uses none of the others' resources). With fewer workers than
clients the slow clients' sleeps block shared workers and the comparison measures the
worker pool, not the desktops (4 workers for 10 clients, one hand run: async 1.01x sync). Every client has a
recorded, seeded slow-down factor (``faults.max_slowdown``: log-uniform in [1, S];
the realised slowest / fastest ratio is printed) and limited uptime (each client is
offline with probability ``faults.offline_prob`` per round or task). Each policy runs
for the same wall-clock budget; the table gives the wall time to a target accuracy and
the accuracy reached at equal wall time (the mean of the evaluations in the last 10 %
of the budget). Policies:

- ``sync``: FedAvg, all C clients per round, no deadline (waits for the slowest);
- ``sync+overcommit``: FedAvg over the first C/2 of C sampled clients to finish
  (``clients_per_round = C/2``, ``overcommit = C/2``): synchronous rounds' best
  answer to stragglers (the late half is cancelled);
- ``async``: FedBuff, K = C tasks in flight, M = C/2 deltas per server update,
  polynomial staleness weight (1 + s)^-0.5, max staleness 10.

``--seeds 1,2,3`` runs every policy once per seed (each seed its own slow-down factors,
partition and keys) and adds a table over the seeds: time to target and the ratio to
sync as mean ± sd with the values per seed. Writes
``benchmarks/out/async_vs_sync/<data>-s<seed>.json`` and one figure per data set, of the
first seed (``docs/results/async_vs_sync_<data>.png``, accuracy against wall time).
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np
import pandas as pd

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

#: data set -> (config overrides, target accuracy)
DATA = {
    "digits": (["model.kwargs={width: 0.25, norm: batch, head: cifar}"], 0.90),
    "cifar10": (["model.name=vgg16", "model.kwargs={width: 0.125, norm: batch, head: cifar}",
                 "data.source=cifar10", "data.image_size=null", "data.max_test_examples=2000",
                 "training.optimizer=momentum", "training.lr=0.05"], 0.30),
}
POLICIES = {
    "sync": ["server.mode=sync"],
    "sync+overcommit": ["server.mode=sync", "training.clients_per_round={half}",
                        "grid.overcommit={half}"],
    "async": ["server.mode=async", "server.concurrency={c}", "server.buffer_size={half}",
              "server.max_staleness=10"],
}


def config(data: str, policy: str, args, seed: int = None):
    from fedjax_grid.experiments import get_preset
    sets, _ = DATA[data]
    c = args.clients
    extra = [s.format(c=c, half=max(1, c // 2)) for s in POLICIES[policy]]
    if data == "cifar10":
        from fedjax_grid.data.paths import shared_data_dir
        sets = sets + [f"data.path={shared_data_dir() / 'cifar-10-binary-sample.tar.gz'}"]
    return get_preset("quickstart").with_overrides(sets + extra + [
        f"name=async-vs-sync-{data}-{policy}", f"partition.num_clients={c}",
        "training.rounds=100000", "training.batch_size=32", "training.local_epochs=1",
        f"grid.workers={args.workers}", "grid.threads_per_worker=1",
        "grid.dashboard_address=null", "faults.enabled=true",
        f"faults.max_slowdown={args.slowdown}", f"faults.offline_prob={args.offline}",
        f"seed={args.seed if seed is None else seed}"]).validate()


def run_policy(cfg, grid, out: pathlib.Path, budget_s: float) -> pd.DataFrame:
    """Rounds (server updates) until ``budget_s`` of wall time; the rounds table."""
    from fedjax_grid.runner import FederatedRun
    run = FederatedRun(cfg, out_dir=out, grid=grid, notify=lambda m: None)
    run.start()
    t0 = time.perf_counter()
    try:
        run.run(should_stop=lambda: time.perf_counter() - t0 > budget_s)
    finally:
        run.close()
    rounds = run.records.rounds()
    tasks = run.records.tasks()
    rounds.attrs["updates"] = int((tasks["status"] == "ok").sum())
    rounds.attrs["tasks"] = len(tasks)
    return rounds


def summary(name: str, rounds: pd.DataFrame, target: float, budget_s: float) -> dict:
    acc_all = rounds["global_accuracy"].to_numpy(float)
    t_all = rounds["elapsed_s"].to_numpy(float)
    # rounds without an evaluation (eval_every, or the one the budget's stop cut short)
    # have no accuracy: the figures are of the evaluated rounds
    evaluated = ~np.isnan(acc_all)
    acc, t = acc_all[evaluated], t_all[evaluated]
    hit = np.flatnonzero(acc >= target)
    tail = acc[t >= 0.9 * budget_s]
    last = float(acc[-1]) if len(acc) else math.nan
    return {"policy": name, "server_updates": len(rounds),
            "client_updates_folded": rounds.attrs.get("updates", 0),
            "tasks": rounds.attrs.get("tasks", 0),
            "time_to_target_s": float(t[hit[0]]) if len(hit) else math.nan,
            "acc_at_budget": float(np.mean(tail)) if len(tail) else last,
            "final_acc": last, "wall_s": float(t_all[-1]) if len(t_all) else math.nan}


def speed_ratio(cfg) -> float:
    from fedjax_grid.hazards import faults
    f = [faults.speed_factor(cfg.faults, cfg.seed, k) for k in range(cfg.partition.num_clients)]
    return max(f) / min(f)


def bench(data: str, args, seed: int = None, figure_too: bool = True) -> list[dict]:
    """Every policy for ``args.budget`` s on one grid, seed ``seed`` (default ``args.seed``):
    the summary row per policy, with its ``seed`` and ``time_vs_sync``."""
    from fedjax_grid.grid.cluster import open_cluster
    seed = args.seed if seed is None else seed
    out = REPO / "benchmarks" / "out" / "async_vs_sync"
    out.mkdir(parents=True, exist_ok=True)
    target = args.target or DATA[data][1]
    cfgs = {p: config(data, p, args, seed) for p in POLICIES}
    print(f"## {data}: {args.clients} clients, {args.workers} workers, seed {seed}, "
          f"slowest/fastest client {speed_ratio(cfgs['sync']):.1f}x, offline probability "
          f"{args.offline}, target {100 * target:.0f} %, budget {args.budget:.0f} s per policy",
          flush=True)
    grid = open_cluster(cfgs["sync"].grid, local_directory=str(out / "dask"))
    tables, rows = {}, []
    try:
        warm = cfgs["sync"].with_overrides(["training.rounds=1", "faults.enabled=false"])
        run_policy(warm, grid, out / f"{data}-warm-{time.time_ns()}", 1e9)  # compile first
        for p, cfg in cfgs.items():
            tables[p] = run_policy(cfg, grid, out / f"{data}-{p}-{time.time_ns()}", args.budget)
            rows.append(summary(p, tables[p], target, args.budget))
            print(f"  {p}: {rows[-1]}", flush=True)
    finally:
        grid.close()
    sync_t = rows[0]["time_to_target_s"]
    for r in rows:
        r["seed"] = seed
        r["time_vs_sync"] = r["time_to_target_s"] / sync_t if sync_t == sync_t else math.nan
    if figure_too:
        figure(data, tables, target)
    (out / f"{data}-s{seed}.json").write_text(json.dumps(
        {"rows": rows, "curves": {p: t[["elapsed_s", "global_accuracy"]].to_dict("list")
                                  for p, t in tables.items()}}, indent=1))
    return rows


def figure(data: str, tables: dict, target: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from fedjax_grid import plots
    both = pd.concat([t.assign(run=p) for p, t in tables.items()], ignore_index=True)
    path = REPO / "docs" / "results" / f"async_vs_sync_{data}.png"
    plots.time_to_accuracy(both, save=path, title=f"{data}: accuracy against wall time "
                           f"(target {100 * target:.0f} %)")
    print(f"  figure: {path}")


def markdown(data: str, rows: list[dict]) -> str:
    """One line per policy and seed; with more than one seed, then one per policy over the
    seeds: mean ± sd and the values per seed (a seed that missed the target: nan)."""
    seeds = sorted({r.get("seed") for r in rows}, key=str)
    lines = [f"| {data}: policy | seed | server updates | client updates folded | tasks | "
             "time to target s | vs sync | accuracy at equal wall time % | final % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = (f"{r['time_to_target_s']:.1f}" if math.isfinite(r["time_to_target_s"])
             else "missed")
        ratio = f"{r['time_vs_sync']:.2f}x" if math.isfinite(r["time_vs_sync"]) else "-"
        lines.append(f"| {r['policy']} | {r.get('seed', '-')} | {r['server_updates']} "
                     f"| {r['client_updates_folded']} | {r['tasks']} | {t} | {ratio} "
                     f"| {100 * r['acc_at_budget']:.2f} | {100 * r['final_acc']:.2f} |")
    if len(seeds) < 2:
        return "\n".join(lines)
    lines += ["", f"| {data}: policy | seeds | time to target s, mean ± sd | vs sync, mean ± sd "
              "(per seed) | accuracy at equal wall time %, mean ± sd |", "|---|---|---|---|---|"]
    for policy in dict.fromkeys(r["policy"] for r in rows):
        mine = [r for r in rows if r["policy"] == policy]
        t, ratio, acc = (np.array([r[k] for r in mine], float)
                         for k in ("time_to_target_s", "time_vs_sync", "acc_at_budget"))
        lines.append(f"| {policy} | {', '.join(str(r['seed']) for r in mine)} | {_mean_sd(t, '.1f')} "
                     f"| {_mean_sd(ratio, '.2f')} ("
                     + " / ".join(f"{r['seed']}: {r['time_vs_sync']:.2f}"
                                  if math.isfinite(r["time_vs_sync"]) else f"{r['seed']}: missed"
                                  for r in mine)
                     + f") | {_mean_sd(100 * acc, '.2f', 'without an evaluation')} |")
    return "\n".join(lines)


def _mean_sd(values: np.ndarray, fmt: str, missing: str = "missed") -> str:
    """'mean ± sd' of the finite values (sd 0 for one), with how many are ``missing`` (no
    value: the target missed, or no evaluation) when some are."""
    ok = values[np.isfinite(values)]
    if not len(ok):
        return f"nan (all {missing})"
    sd = float(np.std(ok, ddof=1)) if len(ok) > 1 else 0.0
    missed = f" ({len(values) - len(ok)} {missing})" if len(ok) < len(values) else ""
    return f"{np.mean(ok):{fmt}} ± {sd:{fmt}}{missed}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="digits,cifar10")
    ap.add_argument("--budget", type=float, default=150.0, help="wall seconds per policy")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--workers", type=int, default=10)
    ap.add_argument("--target", type=float, default=None,
                    help="target accuracy (0-1); default per data set " +
                    str({k: v[1] for k, v in DATA.items()}))
    ap.add_argument("--slowdown", type=float, default=7.0)
    ap.add_argument("--offline", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1, help="seed 1: slowest client 5.9x the fastest")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds, each a run of every "
                    "policy (its own slow-downs, partition and keys); overrides --seed; >= 3 "
                    "for a published ratio (mean ± sd and the values per seed)")
    args = ap.parse_args(argv)
    try:
        seeds = ([int(x) for x in args.seeds.split(",") if x.strip()] if args.seeds is not None
                 else [args.seed])
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) < len(seeds):
        print(f"error: --seeds {args.seeds!r} is invalid: distinct integers >= 0, comma-separated",
              file=sys.stderr)
        return 2
    names = [d.strip() for d in args.data.split(",") if d.strip()]
    bad = [d for d in names if d not in DATA]
    if bad or args.budget <= 0 or args.clients < 2:
        print(f"error: --data {bad[0] if bad else args.data!r} / --budget / --clients invalid; "
              f"allowed: {', '.join(DATA)}, budget > 0, clients >= 2", file=sys.stderr)
        return 2
    tables = [markdown(d, [row for i, seed in enumerate(seeds)
                           for row in bench(d, args, seed, figure_too=i == 0)]) for d in names]
    print()
    for t in tables:
        print(t + "\n")
    print("Goal: async reaches the target in <= 0.6x the wall time of sync.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
