"""Broken desktops in the pool: quarantine counts and accuracy vs a healthy pool.

Real `dask scheduler` + `dask worker --nthreads 1` processes on 127.0.0.1. The healthy
pool is one worker; the broken pool adds three broken desktops beside it, each made so by
a sitecustomize.py on its PYTHONPATH (``tests.faults.conftest.BROKEN_DESKTOPS``):
another fedjax_grid version, fedjax_grid not importable, every task failing. Quickstart
preset (VGG-11 width 0.25, 4 clients, digits). Prints the workers table of the broken
run (tasks ok/failed/late per worker, quarantined and why) and both final accuracies.

    python benchmarks/broken_desktops.py               # 3 rounds
    python benchmarks/broken_desktops.py --rounds 8
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import pandas as pd

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

BROKEN = ("other-version", "no-package", "failing-tasks")


def run_on(kinds, rounds: int, tmp: pathlib.Path, name: str):
    from fedjax_grid.experiments import get_preset
    from fedjax_grid.runner import FederatedRun
    from tests.faults.conftest import ExternalGrid, broken_env, stop
    grid = ExternalGrid(tmp / name)
    (tmp / name).mkdir(parents=True, exist_ok=True)
    grid.start_scheduler()
    grid.start_worker(name="healthy")
    for kind in kinds:
        grid.start_worker(name=kind, env=broken_env(tmp / name, kind))
    messages = []
    try:
        grid.wait_for(1 + len(kinds))
        cfg = get_preset("quickstart").with_overrides([
            f"grid.scheduler={grid.address}", f"training.rounds={rounds}"]).validate()
        run = FederatedRun(cfg, out_dir=tmp / name / "out", notify=messages.append)
        t = time.time()
        run.run()
        wall = time.time() - t
        run.close()
    finally:
        stop(grid.workers + [grid.scheduler], timeout=5)
    return run.records, messages, wall


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="broken-"))
    healthy, _, wall_h = run_on((), args.rounds, tmp, "healthy")
    broken, messages, wall_b = run_on(BROKEN, args.rounds, tmp, "broken")
    workers = broken.workers()[["name", "tasks_ok", "tasks_failed", "tasks_late", "quarantined", "why"]]
    print("console messages of the broken run:")
    for m in messages:
        print("  warning:", m)
    print()
    print(workers.to_string(index=False))
    rh, rb = healthy.rounds(), broken.rounds()
    summary = pd.DataFrame([
        {"pool": "1 healthy", "final_accuracy": round(float(rh["global_accuracy"].iloc[-1]), 4),
         "rounds_with_quorum": f"{int(rh['quorum'].sum())}/{len(rh)}", "wall_s": round(wall_h, 1)},
        {"pool": "1 healthy + 3 broken", "final_accuracy": round(float(rb["global_accuracy"].iloc[-1]), 4),
         "rounds_with_quorum": f"{int(rb['quorum'].sum())}/{len(rb)}", "wall_s": round(wall_b, 1)}])
    print()
    print(summary.to_string(index=False))
    return workers, summary


if __name__ == "__main__":
    main()
