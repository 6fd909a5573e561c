"""Where a steady-state round's time goes: a breakdown by phase (grid.phases).

    python benchmarks/round_profile.py                  # 4 and 20 clients, both grids
    python benchmarks/round_profile.py --clients 4 --grids local --rounds 6

The quickstart (digits, VGG-11 width 0.25, 1 local epoch) on (a) the embedded
2-worker LocalCluster and (b) a real ``dask scheduler`` with 2 ``dask worker``
processes on 127.0.0.1 (started here, stopped by PID). For each, the median over the
steady-state rounds (2..N: round 1 compiles) of every coordinator phase (forming,
broadcast, submit, wait, fold, server, bn, eval, records) and of the workers' mean
training time per task, with ``grid.overlap_rounds`` on (the next round's tasks
launched right after the server step, so ``bn``, ``eval`` and ``records`` run while
they train: the phases of consecutive rounds overlap and add up to more than the
round) and off (``--overlap on,off``). The last rows give the **wall clock per
round** (median difference of ``elapsed_s``), the number that counts. Prints a
markdown table per grid and draws one stacked-bar figure
(``docs/results/round_profile.png``; a black tick marks the wall clock per round).
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


def config(clients: int, rounds: int, scheduler: str | None, overlap: bool = True):
    from fedjax_grid.experiments import get_preset
    sets = ["model.kwargs={width: 0.25, norm: batch, head: cifar}", f"training.rounds={rounds}",
            f"grid.overlap_rounds={str(overlap).lower()}",
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
    from fedjax_grid.runner import FederatedRun
    with FederatedRun(cfg, out_dir=out, notify=lambda m: None) as run:
        run.run()
        rounds = run.records.rounds()
        prof = pd.DataFrame(run.profile)
    prof["round_time_s"] = rounds["round_time_s"].to_numpy()
    prof["wall_s"] = np.diff(rounds["elapsed_s"].to_numpy(), prepend=np.nan)
    return prof


def steady(prof: pd.DataFrame) -> pd.Series:
    """Medians over rounds 2..N (round 1 compiles on the workers); the wall clock per round
    over rounds 2..N-1 (the last round has no next round to overlap)."""
    out = prof[prof["round"] >= 2].drop(columns=["round"]).median()
    out["wall_s"] = float(prof["wall_s"].iloc[1:-1].median())
    return out


def markdown(label: str, s: pd.Series) -> str:
    from fedjax_grid.grid.phases import PHASES
    total = sum(s[p] for p in PHASES)  # round_time_s ends before the records phase
    lines = [f"| {label}: phase | median s per round | share of the round |", "|---|---|---|"]
    for p in PHASES:
        lines.append(f"| {p} | {s[p]:.3f} | {100 * s[p] / total:.1f} % |")
    lines.append(f"| round (all phases; with overlap they run partly at once) | {total:.3f} | 100 % |")
    lines.append(f"| **wall clock per round** (`elapsed_s` difference) | **{s['wall_s']:.3f}** | |")
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
    fig, ax = plt.subplots(figsize=(12, 0.5 * len(labels) + 2.6))
    left = np.zeros(len(labels))
    colors = plt.get_cmap("tab10").colors
    for i, p in enumerate(PHASES):
        vals = np.array([results[k][p] for k in labels])
        ax.barh(labels, vals, left=left, color=colors[i % 10], label=p)
        left += vals
    ax.scatter([results[k]["wall_s"] for k in labels], labels, marker="|", s=400, color="black",
               zorder=5, label="wall clock per round")
    ax.set_xlabel("median seconds per steady-state round")
    ax.legend(ncol=6, fontsize=8, loc="upper center", bbox_to_anchor=(0.4, -0.12))
    ax.set_title("Where a synchronous round's time goes (coordinator phases; | = wall clock per round)",
                 fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="4,20")
    ap.add_argument("--grids", default="local,scheduler")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--overlap", default="on,off", help="grid.overlap_rounds settings measured")
    args = ap.parse_args(argv)
    overlaps = [o.strip() for o in args.overlap.split(",")]
    if any(o not in ("on", "off") for o in overlaps):
        print(f"error: --overlap {args.overlap!r} is invalid: on, off or on,off", file=sys.stderr)
        return 2
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
                for o in overlaps:
                    cfg = config(c, args.rounds, real.address if real else None, overlap=o == "on")
                    prof = profile_run(cfg, tmp / f"run-{c}-{o}")
                    label = (f"{'LocalCluster' if g == 'local' else 'dask scheduler + 2 dask workers'}, "
                             f"{c} clients, overlap {o}")
                    results[label] = steady(prof)
                    prof.to_csv(OUT / f"{g}-{c}-overlap-{o}.csv", index=False)
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
