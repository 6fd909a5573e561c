"""Issue 23's failure mode on a real shaped link: one home desktop, float32 quickstart.

    python benchmarks/emulated_home_link.py                    # 1 Mbit/s uplink (the failure)
    python benchmarks/emulated_home_link.py --up 100Mbit      # the same desktop, fast uplink
    python benchmarks/emulated_home_link.py --rounds 2 --set server.codec=quant(3)

Brings up an emulated grid (root) of ONE desktop -- its own network namespace,
uplink ``--up`` and downlink ``--down`` shaped with tbf, ``--cpu`` of a core and 3 GiB
in its cgroup -- runs ``fedjax-grid run --scheduler ADDRESS`` on it (the quickstart
preset, float32 updates unless ``--set`` says otherwise), takes the grid down, and
prints: the run's exit code and its last error line, rounds and final accuracy,
task outcomes (ok / late / failed, with their reasons), the update size and the
uplink time it needs, and the wall time. It records what the engine does today;
it does not judge it (the fix is issue 23 item 5).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_on_home_desktop(up: str, down: str, cpu: float, rounds: int, sets: list[str],
                        out: str) -> dict:
    """Run the quickstart on a one-desktop emulated grid; the facts of what happened."""
    from fedjax_grid.emulation import EmulatedGrid, profiles
    profile = profiles.from_dict({"desktops": 1, "machines": [
        {"kind": "home", "cpu": cpu, "memory": "3GiB", "down": down, "up": up}]}, "home-1")
    with EmulatedGrid(profile) as g:
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", "fedjax_grid.cli", "run", "--scheduler", g.address,
                            "--out", out, "--quiet", "--no-plots", f"--set=training.rounds={rounds}",
                            *(f"--set={s}" for s in sets)],
                           capture_output=True, text=True, cwd=REPO, timeout=3600)
        wall = time.time() - t0
    return {"rc": r.returncode, "wall_s": wall, "stderr": r.stderr.strip().splitlines()[-1:] or [""],
            "stdout": r.stdout.strip().splitlines()[-6:]}


def summary(facts: dict, out: str, up_bps: float) -> list[str]:
    import pandas as pd
    lines = [f"exit code            {facts['rc']}   (last stderr line: {facts['stderr'][0][:150]!r})",
             f"wall time            {facts['wall_s']:.0f} s"]
    if not os.path.exists(os.path.join(out, "rounds.csv")):
        return lines + ["no rounds.csv: no round finished"]
    rounds, tasks = pd.read_csv(os.path.join(out, "rounds.csv")), pd.read_csv(os.path.join(out, "tasks.csv"))
    lines.append(f"rounds               {len(rounds)}, final global accuracy "
                 f"{100 * rounds['global_accuracy'].iloc[-1]:.1f} %, clients_ok per round "
                 f"{rounds['clients_ok'].tolist()}")
    counts = tasks["status"].value_counts().to_dict()
    lines.append(f"task outcomes        {counts}")
    for reason, n in tasks.loc[tasks["status"] != "ok", "reason"].fillna("").value_counts().items():
        lines.append(f"  {n:3d} x {reason[:140]}")
    got = tasks.loc[tasks["status"] == "ok", "bytes_out"]
    if len(got):
        lines.append(f"update size          {got.median() / 1e6:.2f} MB -> {got.median() * 8 / up_bps:.1f} s "
                     f"on the {up_bps / 1e6:g} Mbit/s uplink (payload only)")
    else:
        model = rounds["bytes_sent"].iloc[0] / max(1, rounds["clients_sampled"].iloc[0])
        lines.append(f"update size          none arrived; the broadcast was {model / 1e6:.2f} MB per "
                     f"client, a float32 update is larger: > {model * 8 / up_bps:.1f} s on the uplink")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--up", default="1Mbit", help="uplink rate (default 1Mbit)")
    p.add_argument("--down", default="16Mbit", help="downlink rate (default 16Mbit)")
    p.add_argument("--cpu", type=float, default=0.5, help="CPU share in cores (default 0.5)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    from fedjax_grid.emulation import skip_reason
    from fedjax_grid.emulation.profiles import parse_rate
    if (reason := skip_reason()) is not None:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    out = tempfile.mkdtemp(prefix="emulated-home-")
    facts = run_on_home_desktop(args.up, args.down, args.cpu, args.rounds, args.sets, out)
    print(f"one emulated home desktop: up {args.up}, down {args.down}, cpu {args.cpu:g} core, "
          f"quickstart {' '.join(args.sets) or 'float32'}, {args.rounds} rounds (records: {out})")
    for line in summary(facts, out, parse_rate(args.up)):
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
