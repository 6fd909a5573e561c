"""Where a steady round's CPU goes: CPU seconds per round of every thread of a run.

    python benchmarks/thread_cpu.py                        # quickstart, 20 clients, 14 rounds
    python benchmarks/thread_cpu.py --clients 4 --set grid.coordinator_xla_threads=2

Starts ``fedjax-grid run --preset quickstart`` (``--set`` overrides passed on), waits
until ``rounds.csv`` shows round 3, reads the CPU time (user + system, from
psutil's per-thread times) of every thread of the coordinator and of its Dask
worker processes, again when round ``--rounds - 1`` is recorded, and prints CPU seconds
per round by process (coordinator / workers, summed over both workers) and thread: XLA's
compute pool (``tf_XLAEigen``), the main thread, Dask's IO loop, the task thread, ...
Python threads are named with ``py-spy dump`` when py-spy is installed (``pip install
py-spy``), else they show as ``python``; threads started after the first reading (the
coordinator's per-round evaluation thread) show as ``python`` too. Linux only.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _threads_cpu(pids) -> dict:
    """(pid, tid) -> (thread name, CPU seconds: user + system), via psutil."""
    import psutil
    out = {}
    for pid in pids:
        try:
            threads = psutil.Process(pid).threads()
        except psutil.Error:
            continue
        for t in threads:
            try:
                with open(f"/proc/{pid}/task/{t.id}/comm") as f:
                    name = f.read().strip()
            except OSError:
                continue  # ended meanwhile
            out[(pid, t.id)] = (name, t.user_time + t.system_time)
    return out


def _python_names(pid: int) -> dict:
    """tid -> Python thread name (py-spy dump), {} without py-spy."""
    if shutil.which("py-spy") is None:
        return {}
    text = subprocess.run(["py-spy", "dump", "-p", str(pid)], capture_output=True,
                          text=True).stdout
    return {int(m.group(1)): m.group(2)
            for m in re.finditer(r'Thread (?:0x[0-9A-Fa-f]+ )?\(?(\d+)\)?[^"\n]*"([^"]*)"', text)}


def _rounds_done(out: str) -> int:
    try:
        with open(os.path.join(out, "rounds.csv")) as f:
            return sum(1 for _ in f) - 1
    except OSError:
        return 0


def measure(clients: int, rounds: int, sets: list[str], out: str) -> tuple[int, float, dict]:
    """(rounds measured, wall s per round, {(role, thread): CPU s per round})."""
    cmd = [sys.executable, "-m", "fedjax_grid.cli", "run", "--preset", "quickstart",
           "--set", f"partition.num_clients={clients}", "--set", f"training.rounds={rounds}",
           "--out", out, "--quiet", "--no-plots"]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    while _rounds_done(out) < 3 and proc.poll() is None:
        time.sleep(0.05)
    import psutil
    workers = [c.pid for c in psutil.Process(proc.pid).children()
               if "spawn_main" in " ".join(c.cmdline())]
    pids = [proc.pid, *workers]
    r0, t0, before = _rounds_done(out), time.monotonic(), _threads_cpu(pids)
    names = {}
    for pid in pids:
        names.update({(pid, tid): n for tid, n in _python_names(pid).items()})
    while _rounds_done(out) < rounds - 1 and proc.poll() is None:
        time.sleep(0.05)
    r1, t1, after = _rounds_done(out), time.monotonic(), _threads_cpu(pids)
    err = proc.communicate()[1]
    if proc.returncode != 0 or r1 <= r0:
        raise SystemExit(f"the run failed: {(err or '').strip().splitlines()[-1:]}")
    n = r1 - r0
    per_round: dict = collections.Counter()
    for key, (name, cpu) in after.items():
        role = "coordinator" if key[0] == proc.pid else "workers"
        label = "XLA compute pool" if "XLAEigen" in name else \
            re.sub(r"\d+", "#", names.get(key, name))[:40]
        per_round[(role, label)] += (cpu - before.get(key, (name, 0))[1]) / n
    return n, (t1 - t0) / n, dict(per_round)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="20")
    ap.add_argument("--rounds", default="14")
    ap.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    if not (args.clients.isdigit() and args.rounds.isdigit()
            and int(args.clients) >= 1 and int(args.rounds) >= 6):
        print(f"error: --clients {args.clients!r} --rounds {args.rounds!r} is invalid: "
              "integers, clients >= 1 and rounds >= 6", file=sys.stderr)
        return 2
    if not os.path.isdir("/proc/self/task"):
        print("error: thread_cpu.py reads /proc (Linux only); skipped", file=sys.stderr)
        return 2
    args.clients, args.rounds = int(args.clients), int(args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        n, wall, cpu = measure(args.clients, args.rounds, args.sets, os.path.join(tmp, "run"))
    total = sum(cpu.values())
    print(f"quickstart, {args.clients} clients {' '.join(args.sets)}; rounds measured: {n}; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print(f"wall per round {wall:.3f} s; CPU per round {total:.3f} s (both processes' threads)\n")
    print("| process | thread | CPU s per round |\n|---|---|---:|")
    for (role, label), v in sorted(cpu.items(), key=lambda kv: -kv[1]):
        if v >= 0.002:
            print(f"| {role} | {label} | {v:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
