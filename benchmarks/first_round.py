"""Compile once per grid: the first round of a run against a steady round, with a cold
and a warm compilation cache.

    python benchmarks/first_round.py                  # 3 reps of (cold, warm, warm without AOT)
    python benchmarks/first_round.py --reps 1 --rounds 5
    python benchmarks/first_round.py --quick          # smoke test

Each rep makes a fresh cache folder (``grid.compile_cache_dir``) and runs the quickstart
preset (``python -m fedjax_grid.cli run --preset quickstart``, 2-worker LocalCluster,
``--rounds`` rounds) three times, one after the other:

* ``cold``: the first run on this grid -- everything is traced, lowered and compiled,
  on the coordinator and on every worker;
* ``warm``: the same preset again: JAX's persistent cache and fedjax_grid's whole-program
  cache (``training.compile_cache.AotFunction``) are filled;
* ``warm, no AOT``: again with ``FEDJAX_GRID_AOT=0``: only JAX's persistent cache
  (every process still traces and lowers its functions).

From ``rounds.csv``: round 1's wall time (``round_time_s + compile_s``: the records keep
the compilation out of ``round_time_s``, docs/RECORDS.md, and this benchmark is about
that compilation), its ``compile_s``, the steady round (median wall time of rounds 3..R:
round 2 overlaps round 1's evaluation), their ratio (goal for ``warm``: <= 1.5), and the
time from the run's start to the end of round 1 (``elapsed_s``: also the grid's and the
coordinator's start); the process wall time is taken by this script. Medians over reps with
the spread (min-max). The load average and versions are printed: on a shared machine
the absolute times move with the load, the ratios less.
"""
from __future__ import annotations

import argparse
import csv
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

KINDS = ("cold", "warm", "warm, no AOT")


def one_run(cache: pathlib.Path, out: pathlib.Path, rounds: int, aot: bool) -> dict:
    env = dict(os.environ)
    if not aot:
        env["FEDJAX_GRID_AOT"] = "0"
    cmd = [sys.executable, "-m", "fedjax_grid.cli", "run", "--preset", "quickstart",
           "--set", f"training.rounds={rounds}", "--set", f"grid.compile_cache_dir={cache}",
           "--set", "grid.dashboard_address=null", "--out", str(out), "--quiet", "--no-plots"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    with open(out / "rounds.csv") as f:
        rows = list(csv.DictReader(f))
    compile_s = [float(r.get("compile_s") or 0.0) for r in rows]
    times = [float(r["round_time_s"]) + c for r, c in zip(rows, compile_s)]
    steady = statistics.median(times[2:]) if len(times) > 2 else float("nan")
    return {"first_s": times[0], "compile_s": compile_s[0], "steady_s": steady,
            "ratio": times[0] / steady, "to_round1_s": float(rows[0]["elapsed_s"]), "wall_s": wall}


def _cell(values, fmt="{:.2f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="fresh-cache repetitions")
    ap.add_argument("--rounds", type=int, default=6, help="rounds per run (>= 3)")
    ap.add_argument("--quick", action="store_true", help="1 rep of 3 rounds")
    args = ap.parse_args(argv)
    if args.quick:
        args.reps, args.rounds = 1, 3
    if args.reps < 1 or args.rounds < 3:
        print(f"error: --reps {args.reps} / --rounds {args.rounds} is invalid: reps >= 1 and "
              "rounds >= 3 required", file=sys.stderr)
        return 2
    load0 = os.getloadavg()
    res = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory(prefix="fedjax_grid-first-round-") as tmp:
        for rep in range(args.reps):
            cache = pathlib.Path(tmp) / f"cache-{rep}"
            for kind in KINDS:
                out = pathlib.Path(tmp) / f"{kind.replace(' ', '_').replace(',', '')}-{rep}"
                res[kind].append(one_run(cache, out, args.rounds, aot=kind != "warm, no AOT"))
                print(f"rep {rep} {kind}: " + ", ".join(f"{k} {v:.2f}" for k, v in res[kind][-1].items()),
                      flush=True)
    import jax
    print(f"\njax {jax.__version__}, {platform.machine()}, {os.cpu_count()} cores; quickstart, "
          f"{args.rounds} rounds, {args.reps} reps; load average {load0[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after\n")
    print("| run | round 1 s (wall) | of it compiling s | steady round s | round 1 / steady "
          "| start to end of round 1 s | process wall s |")
    print("|---|---|---|---|---|---|---|")
    for kind in KINDS:
        r = res[kind]
        print(f"| {kind} | {_cell([x['first_s'] for x in r])} | {_cell([x['compile_s'] for x in r])} "
              f"| {_cell([x['steady_s'] for x in r])} "
              f"| {_cell([x['ratio'] for x in r])} | {_cell([x['to_round1_s'] for x in r])} "
              f"| {_cell([x['wall_s'] for x in r], '{:.1f}')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
