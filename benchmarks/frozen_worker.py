"""A frozen desktop vs the round deadline: real `dask scheduler` + 3 `dask worker --nthreads 1`
processes on 127.0.0.1, one of them SIGSTOPped (a closed laptop lid) for 30 s and 60 s.

Quickstart preset (VGG-11 width 0.25, 4 clients, digits), ``grid.quorum=0.5``. Round 0
compiles on every worker; the victim is stopped as soon as it runs a client task of
round 2 and continued ``stop_s`` seconds later. Prints one row per (deadline, stop):
the worst round time among rounds 1.. (all of them while it slept and after), rounds
with quorum, and the task counts.

    python benchmarks/frozen_worker.py                          # deadline 12 s; stops 30 s, 60 s
    python benchmarks/frozen_worker.py --deadlines 8 12 --stops 30
"""
from __future__ import annotations

import argparse
import math
import os
import pathlib
import signal
import sys
import tempfile
import threading
import time

import pandas as pd

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def config(address: str, deadline: float, rounds: int):
    from fedjax_grid.experiments import get_preset
    return get_preset("quickstart").with_overrides([
        f"grid.scheduler={address}", f"grid.deadline_s={deadline}", "grid.quorum=0.5",
        f"training.rounds={rounds}", "grid.retries=0", "data.max_test_examples=512",
    ]).validate()


def timed_rounds_with_a_freeze(run, victim_busy, freeze, thaw, *, hold_s: float,
                               window_s: float) -> tuple[list[float], bool]:
    """Run ``run`` to the end; once round 1 (compilation) is done and ``victim_busy()``,
    ``freeze()``, hold ``hold_s`` s, ``thaw()`` (from a thread, within ``window_s`` s).
    Returns (the wall time of every round after round 1 in s, whether it froze); always
    thaws and closes the run."""
    run.start()
    times, frozen = [], threading.Event()

    def freezer():
        end = time.time() + window_s
        while time.time() < end and not run.done:
            if run.round >= 1 and victim_busy():
                freeze()
                frozen.set()
                time.sleep(hold_s)
                thaw()
                return
            time.sleep(0.02)

    try:
        run.step()  # round 1: compilation on every worker
        th = threading.Thread(target=freezer, daemon=True)
        th.start()
        while not run.done:
            t = time.time()
            run.step()
            times.append(time.time() - t)
        th.join(timeout=hold_s + 5)
    finally:
        if frozen.is_set():
            thaw()
        run.close()
    return times, frozen.is_set()


def one(grid, deadline: float, stop_s: float, out: pathlib.Path) -> dict:
    """Run with one worker frozen for ``stop_s`` seconds from its first task of round 2."""
    from fedjax_grid.runner import FederatedRun
    pids = grid.ensure(3)
    victim_addr, victim_pid = sorted(pids.items())[-1]
    rounds = 2 + int(math.ceil(stop_s / deadline)) + 1
    run = FederatedRun(config(grid.address, deadline, rounds), out_dir=out, notify=lambda m: None)
    times, _ = timed_rounds_with_a_freeze(
        run, lambda: bool(run.grid.client.processing().get(victim_addr)),
        lambda: os.kill(victim_pid, signal.SIGSTOP), lambda: os.kill(victim_pid, signal.SIGCONT),
        hold_s=stop_s, window_s=120)
    r, tasks = run.records.rounds(), run.records.tasks()
    later = tasks[tasks["round"] >= 2]  # rounds count from 1
    return {"deadline_s": deadline, "stopped_s": stop_s, "rounds_after_0": len(times),
            "worst_round_s": round(max(times), 1), "mean_round_s": round(sum(times) / len(times), 1),
            "over_deadline_s": round(max(times) - deadline, 1),
            "rounds_with_quorum": f"{int(r['quorum'].iloc[1:].sum())}/{len(times)}",
            "ok": int((later["status"] == "ok").sum()), "late": int((later["status"] == "late").sum()),
            "late_on_victim": int(((later["status"] == "late") & (later["worker"] == victim_addr)).sum()),
            "final_accuracy": round(float(r["global_accuracy"].iloc[-1]), 4)}


def main(argv=None) -> pd.DataFrame:
    from tests.faults.conftest import ExternalGrid
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deadlines", type=float, nargs="+", default=[12.0])
    ap.add_argument("--stops", type=float, nargs="+", default=[30.0, 60.0])
    args = ap.parse_args(argv)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="frozen-"))
    grid = ExternalGrid(tmp)
    grid.start_scheduler()
    rows = []
    try:
        for d in args.deadlines:
            for s in args.stops:
                rows.append(one(grid, d, s, tmp / f"d{d:g}-s{s:g}"))
                print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    finally:
        grid.stop()
    table = pd.DataFrame(rows)
    print()
    print(table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False))
    return table


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    main()
