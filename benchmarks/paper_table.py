"""The study's table, run with the study's settings on whatever data and hardware are here.

    # the full scale (the study's 50/10/5 nodes, 90/150/80/60 rounds, full data sets) on a
    # Dask grid of desktops, or without --scheduler on one machine (a GPU when it has one):
    python benchmarks/paper_table.py --cifar10 cifar-10-binary.tar.gz \\
        --tiny-imagenet tiny-imagenet-200.zip --scheduler tcp://SCHEDULER:8786
    # a smoke run on the shared slices, 3 seeds:
    python benchmarks/paper_table.py --rounds 2 --width 0.25 --clients 10 --seeds 0,1,2

Rows (ITP RAS, GRID'2023; presets ``paper-*`` of ``fedjax_grid.experiments``; docs/RESULTS.md
puts the study's numbers beside the accuracy suites' seeds at this machine's scale, with a
compute estimate of this command):

| row | preset: model, data, nodes, distribution | lr, batch, rounds | study |
|---|---|---|---|
| vgg-independent | VGG-16, CIFAR-10, 50 nodes, iid | 0.01, 10, 90 | 86.21 % |
| vgg-balanced | VGG-16, CIFAR-10, 50 nodes, stratified(0.8) | 0.01, 10, 150 | 85.18 % |
| mobilenet-independent | MobileNetV3-Large, Tiny-ImageNet, 10 nodes, iid | 0.001, 32, 80 | 50.08 % |
| mobilenet-balanced | MobileNetV3-Large, Tiny-ImageNet, 5 nodes, stratified(0.9) | 0.001, 32, 60 | 40.31 % |

Each row is the preset run federatedly through the real engine (a LocalCluster of
``--workers`` workers, or ``--scheduler`` for a real grid), with only the overrides
given on the command line (``--rounds``, ``--width`` = VGG channel width / MobileNet
width multiplier, ``--clients``, ``--max-test-examples``, ``--set KEY=VALUE``). Data
default to the shared slices (``../shared/data`` or ``FEDJAX_GRID_SHARED_DATA``).
Every row runs once per ``--seeds`` seed (``seed`` of the config: partition, initial
weights, sampling and training keys). It prints a markdown table with the study's number
beside the measured final and mean-of-last-3 accuracies over the seeds (mean ± sd, the
values per seed) and writes every run's row to ``--out``/results.json. Bad arguments or missing
data: one line, exit status 2.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time
from typing import Optional

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import accuracy  # noqa: E402  (run_federated, summarize, shared_data_dir)

from fedjax_grid.atomic_write import write_atomic  # noqa: E402


def _rows() -> dict:
    """row -> (preset, data source, the study's accuracy %), from experiments.study.STUDY."""
    from fedjax_grid.experiments.study import STUDY
    names = {"vgg-independent": "paper-vgg16-cifar10-independent",
             "vgg-balanced": "paper-vgg16-cifar10-balanced",
             "mobilenet-independent": "paper-mobilenetv3-tinyimagenet-independent",
             "mobilenet-balanced": "paper-mobilenetv3-tinyimagenet-balanced"}
    return {row: (preset, STUDY[preset].source, STUDY[preset].accuracy)
            for row, preset in names.items()}


ROWS = _rows()


def row_config(row: str, data: dict, args, data_dir: str):
    """The preset of ``row`` with the data paths and the command line's overrides."""
    from fedjax_grid.experiments import get_preset
    preset, source, _ = ROWS[row]
    cfg = get_preset(preset)
    sets = [f"data.path={data[source]}", f"data.data_dir={data_dir}",
            "grid.dashboard_address=null", f"grid.workers={args.workers}",
            "grid.threads_per_worker=1"]
    if source == "tiny_imagenet":
        sets.append("data.mode=resident")
    if args.scheduler:
        sets.append(f"grid.scheduler={args.scheduler}")
    if args.rounds:
        sets.append(f"training.rounds={args.rounds}")
    if args.clients:
        sets.append(f"partition.num_clients={args.clients}")
    if args.max_test_examples:
        sets.append(f"data.max_test_examples={args.max_test_examples}")
    if args.width:
        key = "width" if cfg.model.name.startswith("vgg") else "width_multiplier"
        sets.append(f"model.kwargs={json.dumps(dict(cfg.model.kwargs, **{key: args.width}))}")
    return cfg.with_overrides(sets + list(args.sets)).validate()


def main(argv: Optional[list[str]] = None) -> int:
    shared = accuracy.shared_data_dir()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of " + ", ".join(ROWS))
    ap.add_argument("--cifar10", default=str(shared / "cifar-10-binary-sample.tar.gz"),
                    help="CIFAR-10 binary archive (official cifar-10-binary.tar.gz layout)")
    ap.add_argument("--tiny-imagenet", default=str(shared / "tiny-imagenet-200-medium.zip"),
                    help="Tiny-ImageNet-200 zip (official layout)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of every row (default: the study's)")
    ap.add_argument("--width", type=float, default=None, help="VGG width / MobileNet width multiplier")
    ap.add_argument("--clients", type=int, default=None, help="clients of every row (default: the study's)")
    ap.add_argument("--max-test-examples", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster workers")
    ap.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds: each row runs once per "
                    "seed (>= 3 for a published number: mean +- sd and the values per seed)")
    ap.add_argument("--out", default=str(accuracy.REPO / "benchmarks" / "out" / "paper_table"))
    args = ap.parse_args(argv)

    from fedjax_grid.errors import UserError
    try:
        rows = accuracy.parse_names(args.rows, ROWS, "--rows")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, value, low in (("--rounds", args.rounds, 1), ("--clients", args.clients, 1),
                             ("--workers", args.workers, 1),
                             ("--max-test-examples", args.max_test_examples, 1)):
        if value is not None and value < low:
            print(f"error: {name}={value} is invalid: an integer >= {low} is required", file=sys.stderr)
            return 2
    seeds = parse_seeds(args.seeds)
    if seeds is None:
        print(f"error: --seeds {args.seeds!r} is invalid: distinct integers >= 0, comma-separated, "
              "are required", file=sys.stderr)
        return 2
    if args.width is not None and not 0 < args.width <= 4:
        print(f"error: --width={args.width} is invalid: a number in (0, 4] is required", file=sys.stderr)
        return 2
    data = {"cifar10": args.cifar10, "tiny_imagenet": args.tiny_imagenet}
    for row in rows:
        path = pathlib.Path(data[ROWS[row][1]])
        if not path.exists():
            print(f"error: data {str(path)!r} for row {row} not found: give --cifar10 / "
                  "--tiny-imagenet or put the slices in ../shared/data", file=sys.stderr)
            return 2
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        cfgs = {row: row_config(row, data, args, str(out / "prepared")) for row in rows}
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    import jax

    from fedjax_grid.grid.cluster import open_cluster
    print(f"# paper table: jax {jax.__version__}, backend {jax.default_backend()}, "
          f"devices {jax.devices()}", flush=True)
    grid = open_cluster(next(iter(cfgs.values())).grid, local_directory=str(out / "dask"))
    results = []
    try:
        for row, row_cfg in cfgs.items():
            for seed in seeds:
                cfg = row_config_seed(row_cfg, seed)
                spec = accuracy.Spec("paper", row, cfg, seed=seed)
                t = time.perf_counter()
                table = accuracy.run_federated(spec, out / f"{row}-s{seed}", grid,
                                               log=lambda m: print(m, flush=True))
                s = accuracy.summarize(spec, table, time.perf_counter() - t)
                kw = cfg.model.kwargs
                results.append({"row": row, "seed": seed, "study": ROWS[row][2],
                                "model": cfg.model.name,
                                "width": kw.get("width", kw.get("width_multiplier", 1.0)),
                                "data": pathlib.Path(cfg.data.path).name,
                                "distribution": str(cfg.partition.distribution),
                                "clients": cfg.partition.num_clients, "rounds": int(len(table)),
                                "lr": cfg.training.lr, "batch": cfg.training.batch_size,
                                "final": 100 * s["final_acc"], "tail": 100 * s["tail_acc"],
                                "wall_s": s["wall_s"]})
    finally:
        grid.close()
    print()
    print_table(over_seeds(results))
    write_atomic(out / "results.json", json.dumps(results, indent=1))
    return 0


def parse_seeds(text: str) -> Optional[list[int]]:
    """``'0,1,2'`` -> [0, 1, 2]; None unless distinct integers >= 0."""
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        return None
    return seeds if seeds and min(seeds) >= 0 and len(set(seeds)) == len(seeds) else None


def row_config_seed(cfg, seed: int):
    """``cfg`` with ``seed`` (the partition, initial weights, sampling and training keys)."""
    return cfg.with_overrides([f"seed={seed}"]).validate()


def over_seeds(results: list[dict]) -> list[dict]:
    """One row per table row (in first-seen order): its settings, the seeds, and final /
    mean-of-last-3 accuracy (%) as mean, sd (0 for one seed) and the values per seed."""
    rows: dict[str, dict] = {}
    for r in results:
        row = rows.setdefault(r["row"], {k: v for k, v in r.items()
                                         if k not in ("seed", "final", "tail", "wall_s")}
                              | {"seeds": [], "finals": [], "tails": [], "walls": []})
        row["seeds"].append(r["seed"])
        row["finals"].append(r["final"])
        row["tails"].append(r["tail"])
        row["walls"].append(r["wall_s"])
    for row in rows.values():
        for key in ("finals", "tails"):
            v = row[key]
            row[key[:-1] + "_mean"] = statistics.mean(v)
            row[key[:-1] + "_sd"] = statistics.stdev(v) if len(v) > 1 else 0.0
    return list(rows.values())


def print_table(rows: list[dict]) -> None:
    print("| row | model (width) | data | distribution | clients | rounds | lr | batch | seeds "
          "| study % | here: final %, mean ± sd | per seed | here: mean of last 3 %, mean ± sd "
          "| wall s per run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        per_seed = " / ".join(f"{s}: {v:.2f}" for s, v in zip(r["seeds"], r["finals"]))
        print(f"| {r['row']} | {r['model']} ({r['width']:g}) | {r['data']} | {r['distribution']} "
              f"| {r['clients']} | {r['rounds']} | {r['lr']:g} | {r['batch']} "
              f"| {', '.join(map(str, r['seeds']))} | {r['study']:.2f} "
              f"| {r['final_mean']:.2f} ± {r['final_sd']:.2f} | {per_seed} "
              f"| {r['tail_mean']:.2f} ± {r['tail_sd']:.2f} | {statistics.mean(r['walls']):.0f} |")


if __name__ == "__main__":
    sys.exit(main())
