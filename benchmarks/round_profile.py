"""Where a steady-state round's time goes: a breakdown by phase (grid.phases).

    python benchmarks/round_profile.py                  # 4 and 20 clients, both grids
    python benchmarks/round_profile.py --clients 4 --grids local --rounds 6

The quickstart (digits, VGG-11 width 0.25, 1 local epoch) on (a) the embedded
2-worker LocalCluster and (b) a real ``dask scheduler`` with 2 ``dask worker``
processes on 127.0.0.1 (started here, stopped by PID). For each, the median over the
steady-state rounds (2..N: round 1 compiles) of every coordinator phase (forming,
broadcast, submit, wait, fold, server, bn, eval, records) and of the workers' mean
training time per task. Prints a markdown table per grid and draws one stacked-bar
figure (``docs/results/round_profile.png``).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

REPO = pathlib.Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out" / "round_profile"


def config(clients: int, rounds: int, scheduler: str | None):
    from fedjax_grid.experiments import get_preset
    sets = ["model.kwargs={width: 0.25, norm: batch, head: cifar}", f"training.rounds={rounds}",
            f"partition.num_clients={clients}", "grid.workers=2", "grid.threads_per_worker=1",
            "grid.dashboard_address=127.0.0.1:0"]
    if scheduler:
        sets.append(f"grid.scheduler={scheduler}")
    return get_preset("quickstart").with_overrides(sets).validate()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RealGrid:
    """A ``dask scheduler`` and two single-thread ``dask worker`` processes on loopback."""

    def __init__(self, tmp: pathlib.Path):
        exe = shutil.which("dask") or os.path.join(os.path.dirname(sys.executable), "dask")
        port = _free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        log = open(tmp / "grid.log", "w")
        self.procs = [subprocess.Popen([exe, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                        "--no-dashboard", "--no-show"], stdout=log, stderr=log)]
        time.sleep(2.0)
        for i in range(2):
            self.procs.append(subprocess.Popen(
                [exe, "worker", self.address, "--nthreads", "1", "--host", "127.0.0.1",
                 "--no-dashboard", "--name", f"desktop-{i}", "--local-directory", str(tmp / f"w{i}")],
                stdout=log, stderr=log))

    def stop(self):
        for p in self.procs[::-1]:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def profile_run(cfg, out: pathlib.Path) -> pd.DataFrame:
    from fedjax_grid.grid.engine import FederatedRun
    with FederatedRun(cfg, out_dir=out, notify=lambda m: None) as run:
        run.run()
        rounds = run.records.rounds()
        prof = pd.DataFrame(run.profile)
    prof["round_time_s"] = rounds["round_time_s"].to_numpy()
    return prof


def steady(prof: pd.DataFrame) -> pd.Series:
    """Medians over rounds 2..N (round 1 compiles on the workers)."""
    return prof[prof["round"] >= 2].drop(columns=["round"]).median()


def markdown(label: str, s: pd.Series) -> str:
    from fedjax_grid.grid.phases import PHASES
    total = sum(s[p] for p in PHASES)  # round_time_s ends before the records phase
    lines = [f"| {label}: phase | median s per round | share of the round |", "|---|---|---|"]
    for p in PHASES:
        lines.append(f"| {p} | {s[p]:.3f} | {100 * s[p] / total:.1f} % |")
    lines.append(f"| **round (all phases)** | **{total:.3f}** | 100 % |")
    lines.append(f"| workers: training per task (mean) | {s['train_s']:.3f} | "
                 f"{s['tasks']:.0f} tasks on 2 workers |")
    return "\n".join(lines)


def figure(results: dict, path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fedjax_grid.grid.phases import PHASES
    from fedjax_grid.plots import save_png
    labels = list(results)
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(labels) + 1.8))
    left = np.zeros(len(labels))
    colors = plt.get_cmap("tab10").colors
    for i, p in enumerate(PHASES):
        vals = np.array([results[k][p] for k in labels])
        ax.barh(labels, vals, left=left, color=colors[i % 10], label=p)
        left += vals
    ax.set_xlabel("median seconds per steady-state round")
    ax.legend(ncol=5, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    ax.set_title("Where a synchronous round's time goes (coordinator phases)")
    fig.tight_layout()
    save_png(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="4,20")
    ap.add_argument("--grids", default="local,scheduler")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args(argv)
    try:
        clients = [int(c) for c in args.clients.split(",")]
    except ValueError:
        print(f"error: --clients {args.clients!r} is invalid: comma-separated integers", file=sys.stderr)
        return 2
    grids = [g.strip() for g in args.grids.split(",")]
    if any(g not in ("local", "scheduler") for g in grids) or args.rounds < 2 or min(clients) < 1:
        print("error: --grids must be from local,scheduler; --rounds >= 2; --clients >= 1",
              file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    results, tables = {}, []
    for g in grids:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="profile-"))
        real = RealGrid(tmp) if g == "scheduler" else None
        try:
            for c in clients:
                cfg = config(c, args.rounds, real.address if real else None)
                prof = profile_run(cfg, tmp / f"run-{c}")
                label = f"{'LocalCluster' if g == 'local' else 'dask scheduler + 2 dask workers'}, {c} clients"
                results[label] = steady(prof)
                prof.to_csv(OUT / f"{g}-{c}.csv", index=False)
                tables.append(markdown(label, results[label]))
                print(tables[-1] + "\n", flush=True)
        finally:
            if real is not None:
                real.stop()
    figure(results, REPO / "docs" / "results" / "round_profile.png")
    (OUT / "summary.json").write_text(json.dumps({k: v.to_dict() for k, v in results.items()},
                                                 indent=1))
    print(f"figure: {REPO / 'docs' / 'results' / 'round_profile.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
