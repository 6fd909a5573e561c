"""The grid claims, modelled (sleeps in the worker) vs emulated (real cgroups and shaped links).

    python benchmarks/modelled_vs_emulated.py                       # all claims, seeds 0 1 2
    python benchmarks/modelled_vs_emulated.py --claims async codec --seeds 0
    python benchmarks/modelled_vs_emulated.py --csv out.csv

Issue 23 item 3. Each claim runs the SAME work on both sides, seed by seed:

- **modelled**: what a machine without root runs: a LocalCluster of 3 single-thread
  workers on this machine's cores, the heterogeneity simulated inside the tasks
  (``faults.max_slowdown``: a per-client sleep; ``faults.link``: each transfer's time
  computed from its bytes and slept; a frozen desktop: its worker process SIGSTOPped);
- **emulated**: ``fedjax_grid.emulation`` (root): 3 ``dask worker`` desktops, each in its
  own network namespace behind a tbf-shaped veth link and in its own cgroup (CPU quota,
  memory limit, freezer), the run connected over TLS (``fedjax-grid run --scheduler``).

The work (the quickstart: VGG-11 width 0.25 on digits, ``data.max_test_examples=512``)
is sized to run in real time on 2 shared cores, far below the modelled figures elsewhere
in docs/RESULTS.md (VGG-16 on CIFAR, 10 desktops): the ratios, not the seconds, compare.
Times to target leave compilation out (``elapsed_s`` minus the ``compile_s`` so far).

Claims (``--claims``):

``async``   async (FedBuff, 3 in flight, buffer 2, 8 server updates) vs sync (4 clients per
            round, 4 rounds): the same 16 updates. Modelled: slow-downs log-uniform in
            [1, 6.7] per client; emulated: desktops at 100/50/15 % of a core (6.7x), 100
            Mbit/s links. Printed: time to ``--target`` per mode and async / sync.
``codec``   quant(3) both ways + delta broadcast vs float32 on home links (16 Mbit/s down,
            1 Mbit/s up, 3 clients on 3 desktops at 50 % of a core; float32 2 rounds,
            quant 3: float32 reaches 90 % in 2). Modelled:
            ``faults.link`` with those rates, no spread, no latency; emulated: the bytes
            cross the shaped links. Printed: time to target per codec and float32 / quant.
``frozen``  a laptop frozen for ``FREEZE_S`` s from its first task of round 2, deadline
            ``DEADLINE_S`` s, quorum 0.5, no retries (4 clients on 3 laptops, 50 % of a core,
            30/8 Mbit/s). Modelled: its worker SIGSTOPped; emulated: its cgroup frozen.
            Printed: the worst round after round 1 and how far over the deadline it ran.
``linkdrop`` a desktop's link down for 20 s once 100 KB of a broadcast (``down``) or an upload
            (``up``) crossed it, in round 2 of a sync float32 run (desk1: 1 Mbit/s, desk2: 100
            Mbit/s, deadline 45 s). Emulated only: the model has no outage in the middle of a
            transfer (its nearest, ``faults.dropout_prob``, fails a task at once). Printed: the
            round's time, its tasks, and whether desk1 folded an update in round 3.

One row per (claim, side, variant, seed) is printed as it finishes, then the summary
(mean ± sd, per-seed values) with the load average at start and end of each claim.
"""
from __future__ import annotations

import argparse
import math
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from frozen_worker import timed_rounds_with_a_freeze  # noqa: E402  (the freeze-a-round loop)
from output_paths import output_error  # noqa: E402

BASE = ["data.max_test_examples=512"]
TARGET = 0.95
CLAIMS = ("async", "codec", "frozen", "linkdrop")
SLOWEST = 1 / 0.15   # 6.7x: the emulated CPU shares 100/50/15 %
HOME = {"up_mbit": 1, "down_mbit": 16}
DEADLINE_S, FREEZE_S = 12.0, 20.0

PROFILES = {
    "async": {"desktops": 3, "machines": [
        {"kind": "fast", "cpu": 1.0, "memory": "2GiB", "down": "100Mbit", "up": "100Mbit"},
        {"kind": "mid", "cpu": 0.5, "memory": "2GiB", "down": "100Mbit", "up": "100Mbit"},
        {"kind": "slow", "cpu": 0.15, "memory": "2GiB", "down": "100Mbit", "up": "100Mbit"}]},
    "codec": {"desktops": 3, "machines": [
        {"kind": "home", "cpu": 0.5, "memory": "2GiB", "down": "16Mbit", "up": "1Mbit"}] * 3},
    "frozen": {"desktops": 3, "machines": [
        {"kind": "laptop", "cpu": 0.5, "memory": "2GiB", "down": "30Mbit", "up": "8Mbit"}] * 3},
}

VARIANTS = {
    "async": {
        "sync": ["partition.num_clients=4", "training.rounds=4"],
        "async": ["partition.num_clients=4", "server.mode=async", "server.concurrency=3",
                  "server.buffer_size=2", "server.staleness=polynomial(0.5)", "training.rounds=8"],
    },
    "codec": {
        "float32": ["partition.num_clients=3", "training.rounds=2"],
        "quant(3)+delta": ["partition.num_clients=3", "training.rounds=3", "server.codec=quant(3)",
                           "server.broadcast=delta", "server.broadcast_codec=quant(3)"],
    },
}
MODEL_SETS = {
    "async": ["grid.workers=3", "faults.enabled=true", f"faults.max_slowdown={SLOWEST:.2f}"],
    "codec": ["grid.workers=3", "faults.link={name: home, up_mbit: %(up_mbit)s, down_mbit: %(down_mbit)s, "
              "spread: 1, latency_ms_min: 0, latency_ms_max: 0}" % HOME],
}


def load() -> str:
    return "%.1f" % os.getloadavg()[0]


def time_to_target(out: pathlib.Path, target: float) -> dict:
    """Seconds to the first evaluation >= target, compilation left out; final accuracy."""
    import pandas as pd
    path = out / "rounds.csv"
    if not path.exists():
        return {"to_target_s": math.nan, "final": math.nan, "rounds": 0}
    r = pd.read_csv(path)
    run_s = r["elapsed_s"] - r["compile_s"].fillna(0).cumsum()
    hit = r.index[r["global_accuracy"] >= target]
    return {"to_target_s": float(run_s[hit[0]]) if len(hit) else math.nan,
            "final": float(r["global_accuracy"].iloc[-1]), "rounds": len(r)}


def cli_run(out: pathlib.Path, sets: list, seed: int, scheduler: str | None = None) -> dict:
    """``fedjax-grid run`` in a subprocess (own LocalCluster, or the grid at ``scheduler``)."""
    cmd = [sys.executable, "-m", "fedjax_grid.cli", "run", "--out", str(out), "--quiet",
           "--no-plots", f"--set=seed={seed}", *(f"--set={s}" for s in BASE + sets)]
    if scheduler:
        cmd[4:4] = ["--scheduler", scheduler]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=1800)
    err = (p.stderr.strip().splitlines() or [""])[-1][:160]
    return {"rc": p.returncode, "wall_s": time.time() - t0, "error": err if p.returncode else ""}


def claim_runs(claim: str, seeds, tmp: pathlib.Path, emulated: bool, grid=None,
               model_sets: dict = MODEL_SETS) -> list:
    """``async`` / ``codec``: every variant and seed on one side; one row each
    (``model_sets``: the modelled side's extra settings per claim)."""
    rows = []
    for seed in seeds:
        for variant, sets in VARIANTS[claim].items():
            side = "emulated" if emulated else "modelled"
            out = tmp / f"{claim}-{side}-{variant.replace('(', '').replace(')', '')}-{seed}"
            extra = [] if emulated else model_sets[claim]
            res = cli_run(out, sets + extra, seed, grid.address if emulated else None)
            row = {"claim": claim, "side": side, "variant": variant, "seed": seed, "load": load(),
                   **res, **time_to_target(out, TARGET)}
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _line(row: dict) -> str:
    keys = ("to_target_s", "final", "worst_round_s", "over_deadline_s", "late", "desk1_ok_after")
    facts = "  ".join(f"{k} {row[k]:.3g}" if isinstance(row[k], float) else f"{k} {row[k]}"
                      for k in keys if k in row)
    return (f"{row['claim']:8s} {row['side']:8s} {row['variant']:15s} seed {row['seed']}  {facts}  "
            f"load {row['load']}  rc {row.get('rc', 0)} {row.get('error', '')}")


def frozen_config(seed: int, scheduler: str, **extra):
    from fedjax_grid.experiments import get_preset
    rounds = 2 + int(math.ceil(FREEZE_S / DEADLINE_S)) + 1
    sets = {"grid.scheduler": scheduler, "grid.deadline_s": DEADLINE_S, "grid.quorum": 0.5,
            "training.rounds": rounds, "grid.retries": 0, "seed": seed, "grid.overlap_rounds": "false",
            **extra}
    return get_preset("quickstart").with_overrides(BASE + [f"{k}={v}" for k, v in sets.items()]).validate()


def frozen_round(cfg, out, victim_busy, freeze, thaw) -> dict:
    """Run ``cfg`` in this process; freeze the victim once it runs a task of round 2."""
    from fedjax_grid.runner import FederatedRun
    run = FederatedRun(cfg, out_dir=out, notify=lambda m: None)
    times, froze = timed_rounds_with_a_freeze(run, lambda: victim_busy(run), freeze, thaw,
                                              hold_s=FREEZE_S, window_s=180)
    tasks = run.records.tasks()
    later = tasks[tasks["round"] >= 2]
    return {"worst_round_s": max(times), "over_deadline_s": max(times) - DEADLINE_S,
            "late": int((later["status"] == "late").sum()), "ok": int((later["status"] == "ok").sum()),
            "froze": froze, "final": float(run.records.rounds()["global_accuracy"].iloc[-1])}


def frozen_modelled(seeds, tmp) -> list:
    """A SIGSTOPped LocalCluster-like worker (a real dask scheduler + 3 workers on 127.0.0.1)."""
    from tests.faults.conftest import ExternalGrid
    (tmp / "frozen-grid").mkdir(parents=True, exist_ok=True)
    grid = ExternalGrid(tmp / "frozen-grid")
    grid.start_scheduler()
    rows = []
    try:
        for seed in seeds:
            addr, pid = sorted(grid.ensure(3).items())[-1]
            res = frozen_round(frozen_config(seed, grid.address), tmp / f"frozen-modelled-{seed}",
                               lambda run: run.grid.client.processing().get(addr),
                               lambda: os.kill(pid, signal.SIGSTOP), lambda: os.kill(pid, signal.SIGCONT))
            rows.append({"claim": "frozen", "side": "modelled", "variant": "SIGSTOP", "seed": seed,
                         "load": load(), **res})
            print(_line(rows[-1]), flush=True)
    finally:
        grid.stop()
    return rows


def frozen_emulated(g, seeds, tmp) -> list:
    rows = []
    for seed in seeds:
        with g.entered():
            cfg = frozen_config(seed, g.address, **{"grid.tls_dir": g.tls_dir})
            res = frozen_round(cfg, tmp / f"frozen-emulated-{seed}", lambda run: _busy(run, "desk3"),
                               lambda: g.freeze("desk3"), lambda: g.thaw("desk3"))
        rows.append({"claim": "frozen", "side": "emulated", "variant": "cgroup freezer", "seed": seed,
                     "load": load(), **res})
        print(_line(rows[-1]), flush=True)
    return rows


def _busy(run, name: str) -> bool:
    info = run.grid.client.scheduler_info()["workers"]
    addr = next((a for a, w in info.items() if w.get("name") == name), None)
    return bool(addr and run.grid.client.processing().get(addr))


def linkdrop_emulated(seeds, tmp) -> list:
    """Issue 23 item 6's outage, per seed and direction (tests/emulation/test_link_faults.py)."""
    import pandas as pd

    from fedjax_grid.emulation import EmulatedGrid, profiles
    from tests.emulation import test_link_faults as lf
    rows = []
    with EmulatedGrid(profiles.from_dict(lf.PROFILE, "link-faults")) as g:
        for seed in seeds:
            for direction in ("down", "up"):
                out, _, back_s = _outage_run(g, lf, tmp / f"linkdrop-{direction}-{seed}",
                                             direction, seed)
                r, t = pd.read_csv(out / "rounds.csv"), pd.read_csv(out / "tasks.csv")
                r2 = t[t["round"] == 2]
                rows.append({"claim": "linkdrop", "side": "emulated", "variant": "mid-upload"
                             if direction == "up" else "mid-broadcast", "seed": seed, "load": load(),
                             "worst_round_s": float(r.loc[1, "round_time_s"]),
                             "over_deadline_s": float(r.loc[1, "round_time_s"]) - lf.DEADLINE_S,
                             "late": int((r2["status"] == "late").sum()),
                             "failed": int((r2["status"] == "failed").sum()),
                             "desk1_ok_after": int(((t["round"] >= 3) & (t["worker_name"] == "desk1")
                                                    & (t["status"] == "ok")).sum()),
                             "back_s": back_s, "final": float(r["global_accuracy"].iloc[-1])})
                print(_line(rows[-1]), flush=True)
    return rows


def _outage_run(g, lf, out, direction: str, seed: int, rounds: int = 3):
    from fedjax_grid.runner import FederatedRun
    sets = {"server.mode": "sync", "training.rounds": rounds, "seed": seed}
    with g.entered():
        warm = FederatedRun(lf._config(g, **sets), out_dir=out, notify=lambda m: None)
        warm.run(rounds=1)
        warm.close()
        run = FederatedRun(lf._config(g, **sets, **{"grid.deadline_s": lf.DEADLINE_S}), out_dir=out,
                           resume=True, notify=lambda m: None)
        run.start()
        try:
            cutter = lf.start_cutter(g, "desk1", direction)
            run.step()
            cut_at = lf.finish_cutter(cutter)
            back_s = lf._heard_from(g, run.grid.client, "desk1")
            while not run.done:
                run.step()
            run.save_records()
        finally:
            run.close()
    return out, cut_at, back_s


def measure(claims, seeds, tmp, sides=("modelled", "emulated"),
            model_sets: dict = MODEL_SETS) -> list:
    from fedjax_grid.emulation import EmulatedGrid, profiles
    rows = []
    for claim in claims:
        print(f"# {claim}: load {load()} at start", flush=True)
        if claim in VARIANTS:
            if "modelled" in sides:
                rows += claim_runs(claim, seeds, tmp, emulated=False, model_sets=model_sets)
            with EmulatedGrid(profiles.from_dict(PROFILES[claim], claim)) as g:
                rows += claim_runs(claim, seeds, tmp, emulated=True, grid=g)
        elif claim == "frozen":
            rows += frozen_modelled(seeds, tmp)
            with EmulatedGrid(profiles.from_dict(PROFILES[claim], claim)) as g:
                rows += frozen_emulated(g, seeds, tmp)
        else:
            rows += linkdrop_emulated(seeds, tmp)
        print(f"# {claim}: load {load()} at end", flush=True)
    return rows


def _ms(values) -> str:
    import numpy as np
    v = np.asarray(values, float)
    ok = v[~np.isnan(v)]
    per = ", ".join("-" if x != x else f"{x:.3g}" for x in v)
    if not len(ok):
        return f"not reached ({per})"
    return f"{ok.mean():.3g} ± {ok.std(ddof=1) if len(ok) > 1 else 0:.2g} ({per})"


def summary(rows) -> list[str]:
    """Markdown table: per claim and side, the figure and its ratio, mean ± sd (per seed)."""
    import pandas as pd
    df = pd.DataFrame(rows)
    lines = ["| claim | side | figure | mean ± sd (per seed) |", "|---|---|---|---|"]
    ratio = {"async": ("async", "sync"), "codec": ("quant(3)+delta", "float32")}
    for (claim, side), d in df.groupby(["claim", "side"], sort=False):
        if claim in ratio:
            a, b = ratio[claim]
            piv = d.pivot(index="seed", columns="variant", values="to_target_s")
            for v in (b, a):
                lines.append(f"| {claim} | {side} | {v}: s to {TARGET:.0%} | {_ms(piv[v])} |")
            lines.append(f"| {claim} | {side} | {a} / {b} time | {_ms(piv[a] / piv[b])} |")
        else:
            for variant, v in d.groupby("variant", sort=False):
                lines.append(f"| {claim} | {side} | worst round s ({variant}) | "
                             f"{_ms(v['worst_round_s'])} |")
                lines.append(f"| {claim} | {side} | over the {DEADLINE_S if claim == 'frozen' else 45:g} s "
                             f"deadline ({variant}) | {_ms(v['over_deadline_s'])} |")
                lines.append(f"| {claim} | {side} | late tasks after round 1 ({variant}) | "
                             f"{_ms(v['late'])} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--claims", nargs="+", default=list(CLAIMS), choices=CLAIMS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--sides", nargs="+", default=["modelled", "emulated"],
                   choices=["modelled", "emulated"], help="async/codec: which sides to run")
    p.add_argument("--target", type=float, default=TARGET, help="accuracy (default 0.95)")
    p.add_argument("--csv")
    p.add_argument("--keep", help="keep every run's records in this folder")
    p.add_argument("--model-slow-by", choices=["client", "worker"], default="client",
                   help="async, modelled side: whose the slow-down is (faults.slow_by): 'client' "
                        "(default, as before) or 'worker' (the desktop that runs the task)")
    args = p.parse_args(argv)
    if error := output_error(csv=args.csv):
        print(f"error: {error}", file=sys.stderr)
        return 2
    globals()["TARGET"] = args.target   # time_to_target and the summary read it
    model_sets = {**MODEL_SETS,
                  "async": MODEL_SETS["async"] + [f"faults.slow_by={args.model_slow_by}"]}
    from fedjax_grid.emulation import skip_reason
    if (reason := skip_reason()) is not None:
        print(f"skipped: {reason}")
        return 0
    with tempfile.TemporaryDirectory(prefix="modelled_vs_emulated-") as tmp:
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
        rows = measure(args.claims, args.seeds, pathlib.Path(args.keep or tmp), args.sides,
                       model_sets)
    print("\n".join(summary(rows)))
    if args.csv:
        import pandas as pd
        pd.DataFrame(rows).to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
