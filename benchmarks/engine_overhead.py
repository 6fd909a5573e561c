"""Engine overhead: the federated engine on a LocalCluster vs a plain sequential loop.

Prints a table with

1. wall time of the same experiment (same clients, rounds, local work) through the
   engine on a 2-worker LocalCluster and as a plain sequential loop calling the
   local trainer in one process, and their ratio (target <= 1.10);
2. the coordinator's peak RSS for 10 vs 50 clients of VGG-16 (CIFAR head, 32x32),
   each measured in a fresh process (target ratio <= 1.3: aggregation streams);
3. per-client scheduling overhead with a tiny model and 1000 logical clients
   (round wall time minus the workers' own task time, per client; target <= 20 ms);
4. XLA compilations on the workers after round 1 (target 0).

    python benchmarks/engine_overhead.py            # all parts
    python benchmarks/engine_overhead.py --parts 1,4 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def base_config(**over):
    from fedjax_grid.experiments import get_preset
    sets = ["model.kwargs={width: 0.25, norm: batch, head: cifar}", "data.max_test_examples=360",
            "grid.workers=2", "grid.threads_per_worker=1"]
    sets += [f"{k}={v}" for k, v in over.items()]
    return get_preset("quickstart").with_overrides(sets)


def engine_time(cfg, out) -> tuple[float, object]:
    from fedjax_grid.runner import FederatedRun
    run = FederatedRun(cfg, out_dir=out)
    run.start()
    # Warm-up round (compilation on the workers), not timed; then the timed rounds.
    run.run(rounds=1)
    t = time.perf_counter()
    run.run()
    wall = time.perf_counter() - t
    return wall, run


def sequential_fedavg(exp, params, state, r: int, preprocess):
    """One FedAvg round of ``exp`` as a plain loop in this process: ``(params, forming
    state)`` after ``local_train`` of every sampled client (the engine's keys, attempt 0)
    and the weighted mean of their variables."""
    import jax

    from fedjax_grid.experiments.build import forming_rng, sample_clients
    from fedjax_grid.streams import client_key
    from fedjax_grid.federated import mean as mean_aggregator
    from fedjax_grid.training import local_train
    cfg = exp.config
    assignments, state = exp.strategy.apply(state, forming_rng(cfg.seed, r), r)
    agg = mean_aggregator()
    s = agg.init(params)
    for k in sample_clients(cfg, r):
        batch = exp.data.train.__getitems__(assignments[k])
        v, m = local_train(exp.model, params, (batch["image"], batch["label"]), exp.hparams,
                           client_key(cfg.seed, r, int(k)), preprocess=preprocess)
        s = agg.update(s, jax.tree.map(np.asarray, v), m["num_examples"])
    return agg.result(s), state


def sequential_time(cfg) -> float:
    """The same rounds as a plain loop in this process: local_train per client, FedAvg."""
    from fedjax_grid.experiments.build import build_experiment, initial_variables
    from fedjax_grid.training import Standardize, evaluate
    exp = build_experiment(cfg)
    pre = Standardize(mean=exp.data.mean, std=exp.data.std)
    params = initial_variables(cfg, exp.model, exp.data.info.image_shape)
    state = exp.strategy.init(cfg.seed)

    def one_round(r, params, state):
        params, state = sequential_fedavg(exp, params, state, r, pre)
        evaluate(exp.model, params, exp.data.test_arrays, cfg.training.test_batch_size,
                 preprocess=pre)
        return params, state

    params, state = one_round(0, params, state)  # warm-up, as for the engine
    t = time.perf_counter()
    for r in range(1, cfg.training.rounds):
        params, state = one_round(r, params, state)
    return time.perf_counter() - t


def part_overhead(rounds: int, mode: str = "sync") -> dict:
    """Engine vs sequential loop. ``mode='async'``: FedBuff with K = M = C (every
    version folds all C clients' fresh deltas: the same work as a synchronous round)."""
    over = {"training.rounds": rounds + 1, "training.local_epochs": 2}
    if mode == "async":
        c = base_config().partition.num_clients
        over.update({"server.mode": "async", "server.concurrency": c, "server.buffer_size": c})
    cfg = base_config(**over)
    wall_e, run = engine_time(cfg, tempfile.mkdtemp())
    run.close()
    wall_s = sequential_time(cfg)
    return {"engine_s": wall_e, "sequential_s": wall_s, "ratio": wall_e / wall_s}


def part_memory_child(clients: int) -> None:
    cfg = base_config(**{"model.kwargs": "{norm: batch, head: cifar}", "model.name": "vgg16",
                         "partition.num_clients": clients, "training.rounds": 1,
                         "training.batch_size": 16, "data.max_test_examples": 64})
    from fedjax_grid.runner import FederatedRun
    with FederatedRun(cfg, out_dir=tempfile.mkdtemp()) as run:
        run.run()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"clients": clients, "peak_rss_mb": peak_mb}))


def part_memory() -> dict:
    out = {}
    for clients in (10, 50):
        r = subprocess.run([sys.executable, __file__, "--memory-child", str(clients)],
                           capture_output=True, text=True, check=True)
        out[clients] = json.loads(r.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    return {"rss_10_mb": out[10], "rss_50_mb": out[50], "ratio": out[50] / out[10]}


def part_scheduling(clients: int) -> dict:
    # A tiny model and 1000 logical clients with 1 example each (batch 1: the size check
    # refuses a batch larger than a local set): the round is all overhead.
    cfg = base_config(**{"model.kwargs": "{width: 0.0625, norm: none, head: cifar}",
                         "partition.num_clients": clients, "training.rounds": 2,
                         "training.batch_size": 1, "data.max_test_examples": 64})
    from fedjax_grid.runner import FederatedRun
    with FederatedRun(cfg, out_dir=tempfile.mkdtemp()) as run:
        run.run(rounds=1)  # warm-up
        t = time.perf_counter()
        run.run()
        wall = time.perf_counter() - t
        tasks = run.records.tasks()
        busy = tasks[tasks["round"] == 2]["duration_s"].sum() / max(1, len(run.grid.workers()))
    return {"clients": clients, "round_s": wall, "worker_busy_s": busy,
            "per_client_ms": 1000 * max(0.0, wall - busy) / clients}


def part_compilations(rounds: int) -> dict:
    from fedjax_grid.runner import FederatedRun
    from fedjax_grid.training import compile_count
    cfg = base_config(**{"training.rounds": rounds + 1})
    with FederatedRun(cfg, out_dir=tempfile.mkdtemp()) as run:
        run.run(rounds=1)
        before = run.grid.client.run(compile_count)
        coord_before = compile_count()
        run.run()
        after = run.grid.client.run(compile_count)
        coord_after = compile_count()
    worker_new = sum(after[w] - before.get(w, 0) for w in after)
    return {"worker_compilations_after_round_1": worker_new,
            "coordinator_compilations_after_round_1": coord_after - coord_before}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="1,2,3,4")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--modes", default="sync,async", help="part 1: round policies measured")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        part_memory_child(args.memory_child)
        return
    parts = {int(p) for p in args.parts.split(",")}
    rows = _Rows()
    for mode in (args.modes.split(",") if 1 in parts else []):
        r = part_overhead(args.rounds, mode.strip())
        rows.append((f"engine ({mode.strip()}) vs sequential wall time (2-worker LocalCluster)",
                     f"{r['engine_s']:.1f} s vs {r['sequential_s']:.1f} s", f"{r['ratio']:.2f}",
                     "<= 1.10"))
    if 2 in parts:
        r = part_memory()
        rows.append(("coordinator peak RSS, VGG-16, 10 vs 50 clients",
                     f"{r['rss_10_mb']:.0f} MB vs {r['rss_50_mb']:.0f} MB", f"{r['ratio']:.2f}",
                     "<= 1.3"))
    if 3 in parts:
        r = part_scheduling(args.clients)
        rows.append((f"scheduling overhead per client ({r['clients']} clients)",
                     f"round {r['round_s']:.1f} s, workers busy {r['worker_busy_s']:.1f} s",
                     f"{r['per_client_ms']:.1f} ms", "<= 20 ms"))
    if 4 in parts:
        r = part_compilations(args.rounds)
        rows.append(("XLA compilations after round 1 (workers / coordinator)", "",
                     f"{r['worker_compilations_after_round_1']} / "
                     f"{r['coordinator_compilations_after_round_1']}", "0"))
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}; load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print("| measurement | values | result | target |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


class _Rows(list):
    """The table's rows, each also printed (with the load average) as soon as it is
    measured: a part that fails or runs out of time does not take the others with it."""

    def append(self, row) -> None:
        super().append(row)
        print(f"measured (load average {os.getloadavg()[0]:.1f}): " + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
