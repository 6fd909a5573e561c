"""Per-client-task time of a worker's share of a round: one client per compiled step
(today), several clients per vmapped step, and more XLA threads per task.

    python benchmarks/client_tasks.py                     # 4 and 20 clients, 3 alternating reps
    python benchmarks/client_tasks.py --clients 20 --reps 5
    python benchmarks/client_tasks.py --quick             # smoke test

The quickstart preset (digits 32x32, VGG-11 width 0.25 with BatchNorm, momentum SGD lr
0.05, batch 32, 1 local epoch, IID static local sets) with C clients on 2 workers: one
worker's share is every second client of round 1 (C / 2 clients) trained from the
initial global model with the engine's keys. Configurations, each in a fresh process
(the XLA thread pool is sized when JAX starts there), pinned with ``taskset``:

* ``seq 1t/1c``: ``local_train`` per client, XLA pool of 1 thread on 1 core -- a pinned
  LocalCluster worker or a ``grid.xla_threads=1`` worker today;
* ``vmap 1t/1c``: ``training.batched.local_train_many`` over the share (clients with
  equal step counts in one vmapped step), 1 thread on 1 core;
* ``seq 2t/2c``: ``local_train`` per client with a 2-thread pool on both cores -- a task
  using the core the other worker leaves idle (the tail of a round, small grids);
* ``seq 2t/1c``: the same 2-thread pool squeezed onto 1 core -- what a 2-thread task
  costs when the other core is busy after all.

Each process compiles (warm-up pass, persistent cache enabled) and then times
``--passes`` passes over the share; the parent alternates configurations ``--reps``
times and prints medians of the per-client time with the spread (min-max), the load
average and versions, and the process CPU time per client task (all threads): when
every core is busy (a full round at 20 clients), a task's cost is its CPU time, so a
configuration that is faster in wall time but needs more CPU per task only wins while
cores idle. On a shared machine the 2-core figures depend on what else runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

CONFIGS = {  # name -> (mode, PJRT_NPROC, cores for taskset)
    "seq 1t/1c": ("seq", 1, "0"),
    "vmap 1t/1c": ("vmap", 1, "0"),
    "seq 2t/2c": ("seq", 2, "0,1"),
    "seq 2t/1c": ("seq", 2, "0"),
}


def child(mode: str, clients: int, passes: int) -> dict:
    """Run in a fresh process: seconds per pass over the worker's share, after a warm-up."""
    import jax

    from fedjax_grid.experiments import get_preset
    from fedjax_grid.experiments.build import build_experiment, initial_variables, local_sets
    from fedjax_grid.streams import client_key
    from fedjax_grid.training import Standardize, local_train
    from fedjax_grid.training.batched import local_train_many
    from fedjax_grid.training.compile_cache import default_cache_dir, enable_persistent_cache
    enable_persistent_cache(default_cache_dir())
    cfg = get_preset("quickstart").with_overrides([f"partition.num_clients={clients}"])
    exp = build_experiment(cfg)
    variables = initial_variables(cfg, exp.model, exp.data.info.image_shape)
    _, assign = local_sets(cfg, 1, exp.data.train)
    share = list(range(0, clients, 2))
    pre = Standardize(mean=exp.data.mean, std=exp.data.std)
    keys = [client_key(cfg.seed, 0, c) for c in share]
    idx = [assign[c] for c in share]

    def one_pass():
        if mode == "vmap":
            out = local_train_many(exp.model, variables, [exp.data.train] * len(share),
                                   exp.hparams, keys, indices=idx, preprocess=pre)
        else:
            out = [local_train(exp.model, variables, exp.data.train, exp.hparams, k,
                               indices=i, preprocess=pre) for k, i in zip(keys, idx)]
        jax.block_until_ready(jax.tree.leaves([v for v, _ in out]))
    one_pass()  # compile (or load from the persistent cache)
    times = []
    c0 = time.process_time()
    for _ in range(passes):
        t0 = time.perf_counter()
        one_pass()
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - c0) / passes
    return {"per_client_s": statistics.median(times) / len(share), "share": len(share),
            "cpu_per_client_s": cpu / len(share)}


def run_child(name: str, clients: int, passes: int) -> dict:
    mode, nproc, cores = CONFIGS[name]
    env = dict(os.environ, PJRT_NPROC=str(nproc))
    cmd = ["taskset", "-c", cores, sys.executable, __file__, "--child", mode,
           "--clients", str(clients), "--passes", str(passes)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"{name} failed: {r.stderr[-800:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="4,20", help="comma-separated client counts")
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions")
    ap.add_argument("--passes", type=int, default=3, help="timed passes per process")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="subset of: " + ", ".join(CONFIGS))
    ap.add_argument("--quick", action="store_true", help="4 clients, 1 rep, 1 pass")
    ap.add_argument("--child", choices=("seq", "vmap"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, int(args.clients), args.passes)))
        return 0
    try:
        counts = [int(c) for c in args.clients.split(",")]
    except ValueError:
        counts = []
    names = [c.strip() for c in args.configs.split(",")]
    if not counts or min(counts) < 2 or any(n not in CONFIGS for n in names) or args.reps < 1:
        print(f"error: --clients {args.clients!r} / --configs {args.configs!r} / --reps "
              f"{args.reps} is invalid: client counts >= 2, configs among "
              f"{', '.join(CONFIGS)}, reps >= 1", file=sys.stderr)
        return 2
    if args.quick:
        counts, args.reps, args.passes = [4], 1, 1
    load0 = os.getloadavg()
    res = {(c, n): [] for c in counts for n in names}
    cpu = {(c, n): [] for c in counts for n in names}
    for rep in range(args.reps):
        for c in counts:
            for n in (names if rep % 2 == 0 else names[::-1]):
                out = run_child(n, c, args.passes)
                res[(c, n)].append(out["per_client_s"])
                cpu[(c, n)].append(out["cpu_per_client_s"])
    import jax
    print(f"jax {jax.__version__}, {platform.machine()}, {os.cpu_count()} cores; load average "
          f"{load0[0]:.1f} before, {os.getloadavg()[0]:.1f} after; {args.reps} reps x "
          f"{args.passes} passes\n")
    print(f"| clients | worker's share | configuration | s per client task (median) | spread | "
          f"vs {names[0]} | process CPU s per task (median) | spread | CPU vs {names[0]} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in counts:
        base = statistics.median(res[(c, names[0])])
        cpu_base = statistics.median(cpu[(c, names[0])])
        for n in names:
            v, u = res[(c, n)], cpu[(c, n)]
            print(f"| {c} | {len(range(0, c, 2))} | {n} | {statistics.median(v):.3f} "
                  f"| {min(v):.3f}-{max(v):.3f} | {statistics.median(v) / base:.2f}x "
                  f"| {statistics.median(u):.3f} | {min(u):.3f}-{max(u):.3f} "
                  f"| {statistics.median(u) / cpu_base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
