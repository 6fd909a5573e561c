"""What bounds a steady-state round on this machine: the CPU its work needs.

    python benchmarks/cpu_bound.py                 # 4 and 20 clients
    python benchmarks/cpu_bound.py --clients 4

For the quickstart (digits, VGG-11 width 0.25, 1 local epoch) with C clients, prints:

1. **engine CPU per round**: the CPU time (user + system, seconds) of the whole
   ``fedjax-grid run`` process tree -- coordinator, Dask nannies and workers, read with
   ``getrusage(RUSAGE_CHILDREN)`` after the run exits -- for ``--short`` and ``--long``
   rounds; their difference over the extra rounds is the CPU of one steady-state round
   (start-up and compilation cancel out). Divided by the usable cores, it is the
   shortest round this machine can run that work in;
2. **engine wall per round**: the median round-to-round time (``elapsed_s``) of the
   long run, for comparison with (1);
3. **pure compute per round**: the same round's numerical work in one process pinned to
   one core (``local_train`` of every client, BatchNorm re-estimation on the
   calibration examples, evaluation and the collapse check), timed over ``--long``
   rounds after a warm-up round: what any toolkit running the same client and server
   work must spend; the engine's CPU beyond it is its overhead.

``ideal_round`` (used by ``benchmarks/vs_flower.py``) runs that pure compute in two
processes on two cores at once: the shortest steady round the work allows there.
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def engine_cpu(clients: int, rounds: int, work: str) -> tuple[float, list]:
    """(CPU seconds of the process tree, round-to-round seconds) of one CLI run."""
    out = os.path.join(work, f"run-{clients}-{rounds}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "fedjax_grid.cli", "run", "--preset", "quickstart",
                           "--set", f"partition.num_clients={clients}",
                           "--set", f"training.rounds={rounds}", "--out", out, "--quiet",
                           "--no-plots"], cwd=REPO, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "run failed")
    import pandas as pd
    elapsed = pd.read_csv(os.path.join(out, "rounds.csv"))["elapsed_s"].to_numpy()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, list(np.diff(elapsed))


def wait_at(barrier: str, parties: int, timeout: float = 900.0) -> None:
    """A barrier of ``parties`` processes through the folder ``barrier``: mark this
    process there, then wait until every party has (polled every 5 ms)."""
    os.makedirs(barrier, exist_ok=True)
    open(os.path.join(barrier, str(os.getpid())), "w").close()
    end = time.monotonic() + timeout
    while len(os.listdir(barrier)) < parties:
        if time.monotonic() > end:
            raise TimeoutError(f"barrier {barrier}: {len(os.listdir(barrier))} of {parties}")
        time.sleep(0.005)


def pure_child(clients: int, rounds: int, barrier: str | None = None, parties: int = 1) -> dict:
    """(in a child pinned to one core) seconds per round of the round's numerical work;
    with ``barrier``, the timed rounds start when all ``parties`` (other such children)
    have compiled (``wait_at``)."""
    import jax
    from engine_overhead import sequential_fedavg

    from fedjax_grid.experiments import get_preset
    from fedjax_grid.experiments.build import build_experiment, initial_variables
    from fedjax_grid.training import Standardize, evaluate
    from fedjax_grid.training.bn_stats import calibration_indices, logit_spread, recalibrated_stats
    cfg = get_preset("quickstart").with_overrides([f"partition.num_clients={clients}"]).validate()
    exp = build_experiment(cfg)
    pre = Standardize(mean=exp.data.mean, std=exp.data.std)
    params = jax.tree.map(np.asarray, initial_variables(cfg, exp.model, exp.data.info.image_shape))
    state = exp.strategy.init(cfg.seed)
    idx = calibration_indices(len(exp.data.train), cfg.server.bn_calibration_examples, cfg.seed)
    b, tb = cfg.training.batch_size, cfg.training.test_batch_size
    parts = {"train": 0.0, "bn": 0.0, "eval": 0.0}

    def one_round(r, params, state):
        t0 = time.perf_counter()
        params, state = sequential_fedavg(exp, params, state, r, pre)
        t1 = time.perf_counter()
        params = dict(params, batch_stats=recalibrated_stats(
            exp.model, params, exp.data.train, b, indices=idx, preprocess=pre))
        t2 = time.perf_counter()
        evaluate(exp.model, params, exp.data.test_arrays, tb, preprocess=pre)
        logit_spread(exp.model, params, exp.data.test_arrays[0][:tb], preprocess=pre)
        t3 = time.perf_counter()
        parts["train"] += t1 - t0
        parts["bn"] += t2 - t1
        parts["eval"] += t3 - t2
        return params, state

    params, state = one_round(0, params, state)           # compiles
    parts.update(train=0.0, bn=0.0, eval=0.0)
    if barrier:
        wait_at(barrier, parties)
    t = time.perf_counter()
    for r in range(1, rounds + 1):
        params, state = one_round(r, params, state)
    total = time.perf_counter() - t
    return {"round_s": total / rounds, **{k: v / rounds for k, v in parts.items()}}


def pure_compute(clients: int, rounds: int) -> dict:
    """Run :func:`pure_child` in a fresh process pinned to one core (affinity set before
    JAX starts, so XLA uses one thread)."""
    code = ("import os, json, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            f"sys.path.insert(0, {os.path.join(REPO, 'benchmarks')!r}); import cpu_bound; "
            f"print('RESULT', json.dumps(cpu_bound.pure_child({clients}, {rounds})))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["pure compute run failed"])[-1])
    return json.loads(line[0][len("RESULT "):])


def ideal_round(clients: int, rounds: int, work: str, timeout: float = 1800) -> dict:
    """The shortest steady round of this work on this machine's first two cores: two
    processes, each pinned to its own core (one XLA thread), each running the round's
    whole pure compute (``pure_child``) at the same time after both compiled. Two rounds'
    work then takes one process's round time ``t``: with perfect balance, no coordination,
    no transfers and no Python around the kernels, a round takes ``t / 2``. Any toolkit
    doing the same client and server work with the same kernels on these two cores
    (fedjax_grid, Flower) needs at least about that. Returns ``{'round_s': t / 2,
    'process_round_s': [t0, t1], 'cores': [...]}``."""
    cores = sorted(os.sched_getaffinity(0))[:2]
    barrier = os.path.join(work, "barrier")
    procs = []
    for core in cores:
        code = (f"import os, json, sys; os.sched_setaffinity(0, {{{core}}}); "
                f"sys.path.insert(0, {os.path.join(REPO, 'benchmarks')!r}); import cpu_bound; "
                f"print('RESULT', json.dumps(cpu_bound.pure_child({clients}, {rounds}, "
                f"{barrier!r}, {len(cores)})))")
        procs.append(subprocess.Popen([sys.executable, "-c", code], cwd=REPO, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            raise RuntimeError((err.strip().splitlines() or ["ideal round run failed"])[-1])
        results.append(json.loads(line[0][len("RESULT "):]))
    each = [r["round_s"] for r in results]
    return {"round_s": float(np.mean(each)) / len(cores), "process_round_s": each,
            "cores": cores}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="4,20")
    ap.add_argument("--short", type=int, default=2, help="rounds of the short engine run")
    ap.add_argument("--long", type=int, default=8, help="rounds of the long engine run")
    args = ap.parse_args(argv)
    try:
        clients = [int(c) for c in args.clients.split(",")]
    except ValueError:
        print(f"error: --clients {args.clients!r} is invalid: comma-separated integers",
              file=sys.stderr)
        return 2
    if not 1 <= args.short < args.long or min(clients) < 1:
        print(f"error: --short {args.short} / --long {args.long} are invalid: "
              "1 <= short < long required; clients >= 1", file=sys.stderr)
        return 2
    if not hasattr(os, "sched_setaffinity"):
        print("error: this platform cannot pin a process to one core (os.sched_setaffinity)",
              file=sys.stderr)
        return 2
    cores = len(os.sched_getaffinity(0))
    rows = []
    with tempfile.TemporaryDirectory(prefix="cpu-bound-") as work:
        for c in clients:
            cpu_s, _ = engine_cpu(c, args.short, work)
            cpu_l, walls = engine_cpu(c, args.long, work)
            per_round = (cpu_l - cpu_s) / (args.long - args.short)
            pure = pure_compute(c, args.long - args.short)
            wall = float(np.median(walls[:-1])) if len(walls) > 2 else float(np.median(walls))
            rows.append((c, per_round, per_round / cores, wall, pure))
            print(f"  {c} clients: engine {per_round:.2f} CPU-s/round, wall {wall:.2f} s/round; "
                  f"pure compute {pure['round_s']:.2f} s/round on one core", flush=True)
    print(f"\nquickstart; {cores} usable cores; engine runs of {args.short} and {args.long} "
          "rounds; pure compute on one core\n")
    print("| clients | engine CPU-s per round | / cores = shortest round (s) | engine wall per "
          "round (s) | pure compute per round, one core (s): train / bn / eval | engine CPU "
          "beyond the pure compute |")
    print("|---:|---:|---:|---:|---|---:|")
    for c, per_round, floor, wall, p in rows:
        print(f"| {c} | {per_round:.2f} | {floor:.2f} | {wall:.2f} | {p['round_s']:.2f}: "
              f"{p['train']:.2f} / {p['bn']:.2f} / {p['eval']:.2f} | "
              f"{per_round - p['round_s']:+.2f} ({100 * (per_round / p['round_s'] - 1):.0f} %) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
