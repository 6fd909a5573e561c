"""How close the pre-run estimate (experiments.cost) comes to the real wall time and bytes.

For each config: the estimate ``fedjax-grid run`` prints (a training step measured in this
process, or taken from the per-machine cache), then the run itself on a fresh embedded
LocalCluster, and the ratio actual / estimated of the wall time of the rounds
(``elapsed_s`` of the last round, compilation included) and of the bytes sent and
received. Prints a table; ``--out FILE.csv`` keeps it.

    python benchmarks/estimate_accuracy.py                 # quickstart, async, VGG-16 (narrow)
    python benchmarks/estimate_accuracy.py --only quickstart
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import pandas as pd

CASES = {
    "quickstart": ("quickstart", []),
    "quickstart-async": ("quickstart", ["server.mode=async", "server.concurrency=4",
                                        "server.buffer_size=2"]),
    "vgg16-narrow": ("paper-vgg16-cifar10-independent", [
        "data.source=digits", "model.kwargs={width: 0.25, norm: batch, head: cifar}",
        "partition.num_clients=10", "training.rounds=3"]),
}


def measure(name: str, preset: str, sets: list[str], root: pathlib.Path) -> dict:
    from fedjax_grid.experiments import get_preset
    from fedjax_grid.experiments.cost import estimate_run
    from fedjax_grid.runner import FederatedRun
    cfg = get_preset(preset).with_overrides(sets + ["grid.host=127.0.0.1"]).validate()
    run = FederatedRun(cfg, out_dir=root / name, notify=lambda m: None)
    t0 = time.time()
    est = estimate_run(run)
    estimate_s = time.time() - t0
    try:
        records = run.run()
    finally:
        run.close()
    rounds = records.rounds()
    wall = float(rounds["elapsed_s"].iloc[-1])
    return {"case": name, "rounds": len(rounds), "estimated_s": round(est.wall_s, 1),
            "actual_s": round(wall, 1), "time_ratio": round(wall / est.wall_s, 2),
            "bytes_down_ratio": round(rounds["bytes_sent"].sum() / est.bytes_down, 2),
            "bytes_up_ratio": round(rounds["bytes_received"].sum() / est.bytes_up, 2),
            "step_ms": round(1000 * est.step.step_s, 1), "cached_step": est.step.cached,
            "estimate_took_s": round(estimate_s, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=list(CASES), action="append")
    p.add_argument("--out", help="also write the table as CSV")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or CASES:
            preset, sets = CASES[name]
            rows.append(measure(name, preset, sets, pathlib.Path(tmp)))
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
