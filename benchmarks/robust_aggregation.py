"""Robust aggregation under hostile clients: FedAvg (mean) vs median, trimmed mean,
norm clipping and the NormGuard rejection, on a real 2-worker LocalCluster.

10 clients, 20% hostile (``faults.attack_fraction=0.2``) sending their update scaled
x10 ('scale') or Gaussian noise of 10x their update's norm ('random'). Prints one row
per (attack, defence) with the final global test accuracy and its gap to the clean
FedAvg run.

    python benchmarks/robust_aggregation.py                 # full table, 5 rounds
    python benchmarks/robust_aggregation.py --rounds 3 --attacks scale
"""
from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd

#: name -> config overrides; clipped_mean's max_norm is set from the clean run.
DEFENCES = {
    "mean (FedAvg)": ["server.aggregator=mean"],
    "median": ["server.aggregator=median"],
    "trimmed_mean 0.2": ["server.aggregator=trimmed_mean(0.2)"],
    "clipped_mean": ["server.aggregator=clipped_mean"],
    "mean + NormGuard 3x": ["server.aggregator=mean", "server.max_norm_ratio=3"],
}


def base_config(rounds: int):
    from fedjax_grid.experiments import get_preset
    return get_preset("quickstart").with_overrides([
        "model.kwargs={width: 0.125, norm: batch, head: cifar}", f"training.rounds={rounds}",
        "training.local_epochs=1", "training.batch_size=32", "data.max_test_examples=512",
        "partition.num_clients=10", "grid.workers=2", "grid.threads_per_worker=1",
    ]).validate()


def run_one(cfg, grid, out):
    from fedjax_grid.runner import FederatedRun
    run = FederatedRun(cfg, out_dir=out, grid=grid)
    t = time.time()
    run.run()
    rounds, tasks = run.records.rounds(), run.records.tasks()
    return run, {"final_accuracy": float(rounds["global_accuracy"].iloc[-1]),
                 "rejected": int((tasks["status"] == "rejected").sum()),
                 "wall_s": time.time() - t}


def robust_table(rounds=5, attacks=("scale", "random"), defences=tuple(DEFENCES), grid=None,
                 out_dir=None) -> pd.DataFrame:
    """Final accuracies for a clean FedAvg run and each (attack, defence) pair."""
    from fedjax_grid.grid.cluster import open_cluster
    out_dir = out_dir or tempfile.mkdtemp(prefix="robust-")
    base = base_config(rounds)
    own = grid is None
    if own:
        grid = open_cluster(base.grid, local_directory=f"{out_dir}/dask")
    rows = []
    try:
        clean_run, clean = run_one(base, grid, f"{out_dir}/clean")
        # Clip at the size of an honest client's update: the global step of the clean
        # first round (the mean of honest updates) x 1.5.
        from fedjax_grid.federated.tree_math import np_tree_l2_norm, np_tree_sub
        from fedjax_grid.experiments.build import build_experiment
        init = build_experiment(base).initial_state()[0].params
        probe = type(clean_run)(base.with_overrides(["training.rounds=1"]),
                                out_dir=f"{out_dir}/probe", grid=grid)
        probe.run()
        clip = 1.5 * np_tree_l2_norm(np_tree_sub(probe.state.params, init))
        rows.append({"attack": "none", "defence": "mean (FedAvg)", **clean})
        for attack in attacks:
            for i, name in enumerate(defences):
                over = list(DEFENCES[name]) + ["faults.enabled=true", "faults.attack_fraction=0.2",
                                              f"faults.attack={attack}(10)"]
                if "clipped_mean" in name:
                    over.append(f"server.aggregator.max_norm={clip:.6g}")
                cfg = base.with_overrides(over).validate()
                _, res = run_one(cfg, grid, f"{out_dir}/{attack}-{i}")
                rows.append({"attack": attack, "defence": name, **res})
    finally:
        if own:
            grid.close()
    table = pd.DataFrame(rows)
    table["gap_to_clean"] = table["final_accuracy"] - clean["final_accuracy"]
    table.attrs["max_norm"] = clip
    return table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--attacks", default="scale,random")
    args = p.parse_args(argv)
    t = time.time()
    table = robust_table(rounds=args.rounds, attacks=tuple(args.attacks.split(",")))
    print(f"10 clients, 20% hostile (x10), {args.rounds} rounds, quickstart digits, "
          f"clipped_mean max_norm={table.attrs['max_norm']:.4g}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"total {time.time() - t:.0f} s")
    return table


if __name__ == "__main__":
    main()
