"""CPU an idle embedded LocalCluster takes: Dask's default settings vs the engine's.

    python benchmarks/grid_idle_cpu.py                 # 3 reps of 20 s each, alternating
    python benchmarks/grid_idle_cpu.py --reps 1 --seconds 10

A 2-worker LocalCluster (processes, 1 thread each, on 127.0.0.1) is started as the engine
starts it, left idle for 5 s, then the CPU time (user + system) of this process and all its
children is read over ``--seconds``: milliseconds of CPU per second of wall time. On a
2-core desktop every such millisecond is taken from the rounds (a steady round keeps both
cores busy). Settings compared, each run in a fresh process:

- ``dask``: Dask's defaults (worker profiler sampling every thread every 10 ms, event-loop
  tick every 20 ms, system monitor every 0.5 s, nanny memory monitor every 0.1 s);
- ``engine``: ``fedjax_grid.grid.cluster.lean_settings`` (what ``fedjax-grid run`` uses).

Prints one markdown table: median (min-max) over the reps.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time


def _tree_cpu_s() -> float:
    import psutil
    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system
    for child in me.children(recursive=True):
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.Error:
            pass
    return total


def child(setting: str, seconds: float) -> dict:
    """(in a fresh process) CPU ms per s of an idle LocalCluster started with ``setting``."""
    import dask
    import distributed

    from fedjax_grid.experiments import get_preset
    from fedjax_grid.grid.cluster import lean_settings
    grid = get_preset("quickstart").validate().grid
    extra = lean_settings(grid) if setting == "engine" else {}
    with tempfile.TemporaryDirectory() as scratch, dask.config.set(extra):
        cluster = distributed.LocalCluster(
            n_workers=grid.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", local_directory=scratch,
            silence_logs=logging.ERROR)
        try:
            with distributed.Client(cluster):
                time.sleep(5.0)
                a, t0 = _tree_cpu_s(), time.monotonic()
                time.sleep(seconds)
                b, t1 = _tree_cpu_s(), time.monotonic()
        finally:
            cluster.close()
    return {"setting": setting, "cpu_ms_per_s": 1000.0 * (b - a) / (t1 - t0)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", default="3")
    ap.add_argument("--seconds", default="20")
    ap.add_argument("--child", choices=["dask", "engine"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        reps, seconds = int(args.reps), float(args.seconds)
        if reps < 1 or not 0 < seconds < 3600:
            raise ValueError
    except ValueError:
        print(f"error: --reps {args.reps!r} --seconds {args.seconds!r} is invalid: an integer "
              ">= 1 and seconds in (0, 3600)", file=sys.stderr)
        return 2
    args.reps, args.seconds = reps, seconds
    if args.child:
        print(json.dumps(child(args.child, args.seconds)))
        return 0
    import numpy as np
    load = os.getloadavg()[0]
    runs: dict = {"dask": [], "engine": []}
    for rep in range(args.reps):
        for setting in runs:
            out = subprocess.run([sys.executable, __file__, "--child", setting,
                                  "--seconds", str(args.seconds)],
                                 capture_output=True, text=True, check=True)
            value = json.loads(out.stdout.strip().splitlines()[-1])["cpu_ms_per_s"]
            runs[setting].append(value)
            print(f"{setting}, rep {rep + 1}: {value:.1f} ms of CPU per s", flush=True)
    print(f"\nidle 2-worker LocalCluster, {args.seconds:g} s per run, {args.reps} alternating "
          f"runs per setting; load average at start {load:.1f}\n")
    print("| settings | CPU ms per s, median (min-max) | per-run values |")
    print("|---|---|---|")
    for setting, values in runs.items():
        v = np.asarray(values)
        print(f"| {setting} | {np.median(v):.1f} ({v.min():.1f}-{v.max():.1f}) | "
              + ", ".join(f"{x:.1f}" for x in values) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
