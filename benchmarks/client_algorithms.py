"""Client algorithms on strongly non-IID clients: FedAvg vs SCAFFOLD vs FedNova.

Each local set is drawn from Dirichlet(0.1) class proportions (most clients hold one
or two classes), 10 clients, all of them every round, static local sets, on a real
2-worker LocalCluster; the same seeds for every algorithm (the same partition, the
same sampling and training keys: only the algorithm differs). Prints one row per
(suite, algorithm): the mean of the last 3 evaluations' test accuracy as mean +- sd
over the seeds, each seed's value, and the gap to FedAvg on the same seed.

Suites (sized for a shared 2-core machine):

* ``digits``: scikit-learn's digits at 32 px, VGG-11 width 0.25 (the quickstart model),
  2 local epochs, 20 rounds;
* ``cifar10``: the CIFAR-10 slice of ../shared/data, VGG-16 width 0.25 (as
  benchmarks/accuracy.py), 1 local epoch, 15 rounds.

The published finding (Karimireddy et al. 2020) is that SCAFFOLD beats FedAvg when
clients disagree; FedNova (Wang et al. 2020) targets the objective inconsistency of
clients taking different numbers of local steps (here: different local set sizes).

    python benchmarks/client_algorithms.py                          # both suites, seeds 0,1,2
    python benchmarks/client_algorithms.py --suites digits --rounds 5 --seeds 0
    # run_all's piece: each finished run kept as it ends; a re-run runs only the missing ones
    python benchmarks/client_algorithms.py --rows-file benchmarks/out/client-algorithms-rows.json
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from output_paths import output_error  # noqa: E402

ALGORITHMS = ("fedavg", "scaffold", "fednova")
SUITES = ("digits", "cifar10")
#: suite -> (rounds, local epochs)
DEFAULTS = {"digits": (20, 2), "cifar10": (15, 1)}
#: accuracies compared are the mean of this many last evaluations
TAIL = 3


def suite_config(suite: str, rounds: int, epochs: int, data_dir: str):
    """The FedAvg config of ``suite`` (the algorithm and seed are set per run)."""
    from fedjax_grid.data.paths import shared_data_dir
    from fedjax_grid.experiments import get_preset
    sets = ["partition.num_clients=10", "partition.distribution=dirichlet(0.1)",
            "partition.forming=static", f"training.rounds={rounds}",
            f"training.local_epochs={epochs}", "training.optimizer=momentum", "training.lr=0.05",
            "training.batch_size=32", "grid.workers=2", "grid.threads_per_worker=1",
            "grid.dashboard_address=null"]
    if suite == "cifar10":
        path = shared_data_dir() / "cifar-10-binary-sample.tar.gz"
        if not path.exists():
            raise SystemExit(f"error: {path} is missing (the CIFAR-10 slice of ../shared/data)")
        sets += ["model.name=vgg16", "model.kwargs={width: 0.25, norm: batch, head: cifar}",
                 "data.source=cifar10", f"data.path={path}", f"data.data_dir={data_dir}",
                 "data.image_size=null"]
    return get_preset("quickstart").with_overrides(sets).validate()


def tail_accuracy(rounds) -> float:
    acc = rounds["global_accuracy"].to_numpy(dtype=float)
    acc = acc[np.isfinite(acc)]
    return float(np.mean(acc[-TAIL:])) if len(acc) else math.nan


def run_one(cfg, grid, out: str) -> dict:
    from fedjax_grid.runner import FederatedRun
    t = time.time()
    with FederatedRun(cfg, out_dir=out, grid=grid, notify=lambda m: None) as run:
        run.run()
        rounds = run.records.rounds()
    return {"tail_acc": tail_accuracy(rounds),
            "final_acc": float(rounds["global_accuracy"].iloc[-1]),
            "curve": [float(a) for a in rounds["global_accuracy"]], "wall_s": time.time() - t}


def _key(row: dict) -> tuple:
    return (row["suite"], row["algorithm"], int(row["seed"]), int(row["rounds"]))


def read_rows_file(path: pathlib.Path) -> list[dict]:
    """The rows a ``--rows-file`` keeps ([] when it does not exist); ValueError (one line)
    when it is not such a file."""
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
        for row in rows:
            _key(row), float(row["tail_acc"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"--rows-file {path} is not a rows file of this benchmark "
                         f"({type(err).__name__}: {err})") from None
    return rows


def write_rows_file(path: pathlib.Path, rows: list[dict]) -> None:
    """Keep ``rows`` in ``path`` atomically (an interrupted write leaves the earlier rows
    whole)."""
    from fedjax_grid.atomic_write import write_atomic
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(rows, indent=1))


def measure(suites, algorithms, seeds, rounds, work: str, log=print,
            kept: list[dict] | None = None, on_row=None) -> list[dict]:
    """One row per (suite, algorithm, seed); a row of ``kept`` with the same suite,
    algorithm, seed and rounds is taken instead of running it again; ``on_row(rows)`` is
    called after each run with the rows so far."""
    from fedjax_grid.grid.cluster import open_cluster
    have = {_key(r): r for r in kept or []}
    rows, grid = [], None
    try:
        for suite in suites:
            r, epochs = DEFAULTS[suite]
            base = suite_config(suite, rounds or r, epochs, f"{work}/data")
            for seed in seeds:
                for alg in algorithms:
                    if (suite, alg, seed, base.training.rounds) in have:
                        rows.append(have[(suite, alg, seed, base.training.rounds)])
                        log(f"{suite} {alg} seed {seed}: kept")
                        continue
                    grid = grid or open_cluster(base.grid, local_directory=f"{work}/dask")
                    cfg = base.with_overrides([f"seed={seed}", f"training.algorithm={alg}",
                                               f"name={suite}-{alg}-{seed}"])
                    res = run_one(cfg, grid, f"{work}/{suite}-{alg}-{seed}")
                    rows.append({"suite": suite, "algorithm": alg, "seed": seed,
                                 "rounds": cfg.training.rounds, **res})
                    log(f"{suite} {alg} seed {seed}: last-{TAIL} accuracy "
                        f"{100 * res['tail_acc']:.2f} % ({res['wall_s']:.0f} s)")
                    if on_row is not None:
                        on_row(rows)
    finally:
        if grid is not None:
            grid.close()
    return rows


def markdown_table(rows: list[dict]) -> str:
    """mean +- sd over seeds, per-seed values, and the per-seed gap to FedAvg."""
    head = (f"| suite | algorithm | rounds | mean of last {TAIL} acc %, mean ± sd | per seed | "
            "gap to FedAvg, points (per seed) | wall s per run |")
    lines = [head, "|" + "---|" * 7]
    for suite in dict.fromkeys(r["suite"] for r in rows):
        base = {r["seed"]: r["tail_acc"] for r in rows if r["suite"] == suite
                and r["algorithm"] == "fedavg"}
        for alg in dict.fromkeys(r["algorithm"] for r in rows if r["suite"] == suite):
            mine = [r for r in rows if r["suite"] == suite and r["algorithm"] == alg]
            acc = np.array([100 * r["tail_acc"] for r in mine])
            gaps = [100 * (r["tail_acc"] - base[r["seed"]]) for r in mine if r["seed"] in base]
            sd = float(np.std(acc, ddof=1)) if len(acc) > 1 else math.nan
            gap = "" if alg == "fedavg" else (f"{np.mean(gaps):+.2f} ("
                                              + ", ".join(f"{g:+.2f}" for g in gaps) + ")")
            lines.append(f"| {suite} | {alg} | {mine[0]['rounds']} | {acc.mean():.2f} ± {sd:.2f} | "
                         + ", ".join(f"{a:.2f}" for a in acc)
                         + f" | {gap} | {np.mean([r['wall_s'] for r in mine]):.0f} |")
    return "\n".join(lines)


def parse_list(text: str, allowed, flag: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        print(f"error: {flag}={text!r} is invalid: a comma-separated subset of "
              f"{', '.join(allowed)} is required", file=sys.stderr)
        raise SystemExit(2)
    return names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suites", default=",".join(SUITES))
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS))
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (>= 3 for RESULTS)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per run (default per suite)")
    ap.add_argument("--json", default=None, help="also write the rows (with curves) here")
    ap.add_argument("--rows-file", default=None, metavar="JSON",
                    help="keep every finished run's row in JSON as it ends and run only the "
                         "(suite, algorithm, seed, rounds) it does not hold (resumable)")
    args = ap.parse_args(argv)
    suites = parse_list(args.suites, SUITES, "--suites")
    algorithms = parse_list(args.algorithms, ALGORITHMS, "--algorithms")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds) or (args.rounds is not None and not 1 <= args.rounds <= 1000):
        print(f"error: --seeds={args.seeds!r} / --rounds={args.rounds!r} is invalid: seeds are "
              "integers >= 0, rounds an integer in [1, 1000]", file=sys.stderr)
        return 2
    if error := output_error(json=args.json, rows_file=args.rows_file):
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows_file = pathlib.Path(args.rows_file) if args.rows_file else None
    try:
        kept = read_rows_file(rows_file) if rows_file else []
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    def keep(rows):
        if rows_file is not None:
            done = {_key(r) for r in rows}
            write_rows_file(rows_file, [r for r in kept if _key(r) not in done] + rows)

    t = time.time()
    rows = measure(suites, algorithms, seeds, args.rounds, tempfile.mkdtemp(prefix="clientalg-"),
                   kept=kept, on_row=keep)
    print(f"\n# client algorithms, Dirichlet(0.1), 10 clients, seeds {seeds}, "
          f"total wall {time.time() - t:.0f} s\n")
    print(markdown_table(rows))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
