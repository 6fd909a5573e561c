"""Grid parameters on the emulated grid: fixed settings vs ``auto`` (issue 23 item 4).

    python benchmarks/grid_tuning.py                               # home profile, seed 0
    python benchmarks/grid_tuning.py --profiles home laptops --seeds 0 1 2
    python benchmarks/grid_tuning.py --settings default auto d30-o1 --target 0.95

For each profile an emulated grid is brought up once (root; ``fedjax_grid.emulation``);
the workers compile in a warm-up run of one round; then for each seed and each setting
the profile's availability schedule is restarted with that seed (so every setting meets
the same link drops, frozen lids and dead batteries at the same run times) and
``fedjax-grid run --scheduler ADDRESS`` runs the quickstart (quant(3) both ways, delta
broadcast: the home uplink's workload; 8 clients, 4 per round, so that there are spares
to overcommit) for up to ``--rounds`` rounds. A setting is
``default`` (no deadline, quorum 0.5, no overcommit), ``auto`` (all three 'auto'), or
``d<deadline>-o<overcommit>[-q<quorum>]`` (e.g. ``d30-o1``). Printed: time to
``--target`` accuracy (s; '-' when not reached), final accuracy, rounds, tasks
ok / late / failed, per setting and seed, then per setting the median time to target,
the best fixed setting, and the two ratios the issue asks for: auto vs the best fixed
(goal <= 1.10) and default vs auto (goal >= 1.5). ``--csv`` writes the rows, ``--png``
a bar chart of the medians.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from output_paths import output_error  # noqa: E402
WORKLOAD = ["server.codec=quant(3)", "server.broadcast=delta", "server.broadcast_codec=quant(3)",
            "data.max_test_examples=512", "partition.num_clients=8", "training.clients_per_round=4"]
SETTING = re.compile(r"^d(\d+(?:\.\d+)?)-o(\d+)(?:-q(\d(?:\.\d+)?))?$")


def setting_overrides(name: str) -> list[str]:
    """``--set`` values of a setting name (see the module)."""
    if name == "default":
        return []
    if name == "auto":
        return ["grid.deadline_s=auto", "grid.quorum=auto", "grid.overcommit=auto"]
    m = SETTING.match(name)
    if m is None:
        raise SystemExit(f"error: setting {name!r} is not known; allowed: default, auto, "
                         "d<seconds>-o<overcommit>[-q<quorum>]")
    out = [f"grid.deadline_s={m.group(1)}", f"grid.overcommit={m.group(2)}"]
    return out + ([f"grid.quorum={m.group(3)}"] if m.group(3) else [])


def run_once(address: str, out: str, sets: list[str], rounds: int, seed: int) -> dict:
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "fedjax_grid.cli", "run", "--scheduler", address,
                        "--out", out, "--quiet", "--no-plots", f"--set=training.rounds={rounds}",
                        f"--set=seed={seed}", *(f"--set={s}" for s in WORKLOAD + sets)],
                       capture_output=True, text=True, cwd=REPO, timeout=3600)
    return {"rc": r.returncode, "wall_s": time.time() - t0,
            "error": (r.stderr.strip().splitlines() or [""])[-1][:200]}


def facts(out: str, target: float) -> dict:
    import pandas as pd
    path = os.path.join(out, "rounds.csv")
    if not os.path.exists(path):
        return {"time_to_target_s": float("nan"), "final_accuracy": float("nan"), "rounds": 0}
    rounds, tasks = pd.read_csv(path), pd.read_csv(os.path.join(out, "tasks.csv"))
    hit = rounds[rounds["global_accuracy"] >= target]
    counts = tasks["status"].value_counts()
    return {"time_to_target_s": float(hit["elapsed_s"].iloc[0]) if len(hit) else float("nan"),
            "final_accuracy": float(rounds["global_accuracy"].iloc[-1]), "rounds": len(rounds),
            **{f"tasks_{s}": int(counts.get(s, 0)) for s in ("ok", "late", "failed")}}


def sweep(profile: str, desktops, seeds, settings, rounds: int, target: float, tmp: str) -> list:
    from fedjax_grid.emulation import EmulatedGrid
    rows = []
    with EmulatedGrid(profile, desktops) as g:
        warm = run_once(g.address, os.path.join(tmp, f"{profile}-warm"), [], 1, 0)
        print(f"# {profile}: {len(g.desktops)} desktops; warm-up round {warm['wall_s']:.0f} s "
              f"(rc {warm['rc']})", flush=True)
        for seed in seeds:
            for name in settings:
                g.start_schedule(seed)  # the same hazards at the same run times for each
                out = os.path.join(tmp, f"{profile}-{name}-{seed}")
                res = run_once(g.address, out, setting_overrides(name), rounds, seed)
                row = {"profile": profile, "setting": name, "seed": seed, **res,
                       **facts(out, target)}
                rows.append(row)
                print(f"{profile:8s} {name:12s} seed {seed}  to target "
                      f"{_s(row['time_to_target_s']):>6s}  final {row['final_accuracy']:.3f}  "
                      f"rounds {row['rounds']:2d}  ok/late/failed {row.get('tasks_ok', 0)}/"
                      f"{row.get('tasks_late', 0)}/{row.get('tasks_failed', 0)}  rc {row['rc']}  "
                      f"{row['error'][:80] if row['rc'] else ''}", flush=True)
    return rows


def _s(x: float) -> str:
    return "-" if x != x else f"{x:.0f}"


def report(rows: list) -> list[str]:
    import numpy as np
    import pandas as pd
    df = pd.DataFrame(rows)
    lines = []
    for profile, d in df.groupby("profile"):
        # a run that never reached the target counts as its wall time (a lower bound)
        t = d["time_to_target_s"].fillna(d["wall_s"])
        med = t.groupby(d["setting"]).median()
        missed = d["time_to_target_s"].isna().groupby(d["setting"]).sum()
        lines.append(f"## {profile}: median time to target (s), per setting (runs that missed it: "
                     "their wall time, marked *)")
        for name, v in med.sort_values().items():
            lines.append(f"  {name:12s} {v:7.0f}{'*' * int(missed[name])}")
        fixed = med.drop("auto", errors="ignore")  # the default is a fixed setting too
        if "auto" in med.index and len(fixed):
            best = fixed.idxmin()
            lines.append(f"  auto / best fixed ({best}): {med['auto'] / fixed[best]:.2f} (goal <= 1.10)")
        if "auto" in med.index and "default" in med.index:
            lines.append(f"  default / auto: {med['default'] / med['auto']:.2f} (goal >= 1.5)")
        lines.append(f"  seeds: {sorted(np.unique(d['seed']).tolist())}")
    return lines


def plot(rows: list, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    df = pd.DataFrame(rows)
    df["t"] = df["time_to_target_s"].fillna(df["wall_s"])
    profiles = sorted(df["profile"].unique())
    fig, axes = plt.subplots(1, len(profiles), figsize=(5 * len(profiles), 3.2), squeeze=False)
    for ax, profile in zip(axes[0], profiles):
        d = df[df["profile"] == profile]
        med = d.groupby("setting")["t"].median().sort_values()
        ax.bar(med.index, med.values, color=["tab:green" if n == "auto" else "tab:gray"
                                             if n == "default" else "tab:blue" for n in med.index])
        for _, r in d.iterrows():
            ax.plot(list(med.index).index(r["setting"]), r["t"], "k.", ms=4)
        ax.set_title(f"{profile}: time to target")
        ax.set_ylabel("seconds")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profiles", nargs="+", default=["home"])
    p.add_argument("--desktops", type=int, default=None)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--settings", nargs="+", default=["default", "d20-o1", "d40-o1", "d20-o2", "auto"])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--csv")
    p.add_argument("--png")
    p.add_argument("--keep", help="keep every run's records in this folder (default: a "
                                  "temporary one, removed)")
    args = p.parse_args(argv)
    for name in args.settings:
        setting_overrides(name)  # refuse a bad name before anything starts
    if error := output_error(csv=args.csv, png=args.png):
        print(f"error: {error}", file=sys.stderr)
        return 2
    from fedjax_grid.emulation import skip_reason
    reason = skip_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="grid_tuning-") as tmp:
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            tmp = args.keep
        for profile in args.profiles:
            rows += sweep(profile, args.desktops, args.seeds, args.settings, args.rounds,
                          args.target, tmp)
    print("\n".join(report(rows)))
    if args.csv:
        import pandas as pd
        pd.DataFrame(rows).to_csv(args.csv, index=False)
    if args.png:
        plot(rows, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
