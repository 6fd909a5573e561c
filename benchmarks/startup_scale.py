"""Start-up at scale: a coordinator connecting to many real desktops, with many clients.

Real processes on 127.0.0.1: one `dask scheduler` and N `dask worker --no-nanny --nthreads 1
--memory-limit M`, started afresh for every row and connected before the clock starts (they
are the grid, not the coordinator's start-up; every row is a cold start: the workers have
not imported JAX yet). For each (workers, clients) a fresh coordinator process runs one
round of the quickstart preset sized to the clients (digits; ``batch_size=1``; 4 clients in
the round, so that the first round measures the broadcast to every worker and not 32
compilations sharing this machine's cores) and reports its start-up stages
(``FederatedRun.stages``):

  data         loading digits and partitioning it into C local sets
  model        building the model and the server state
  grid         connecting: registering the worker plugin (bounded by grid.connect_timeout_s)
  first_round  waiting for the first worker that finished its set-up (grid.health: up to
               grid.wait_for_workers_s + 10 s per connected worker while they set up), the
               broadcast to every healthy worker, one task per client sampled, compiling on
               the workers that got one, folding, evaluation

plus the coordinator's peak RSS (``ru_maxrss``) at the end of the round and its RSS before
the run (after importing JAX), the workers that ran a task, the accuracy, a digest of the
final parameters (and whether they are identical across worker counts for the same
clients), and the load average before and after the row. Prints one table row per
(workers, clients)::

    python benchmarks/startup_scale.py                              # 4 and 32 workers, 64 and 1000 clients
    python benchmarks/startup_scale.py --workers 8 --clients 1000 --memory-limit 1GiB

Measured: docs/RESULTS.md, "Start-up at scale".
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def params_digest(state) -> str:
    """sha256 (first 16 hex digits) of the global parameters' bytes, leaf by leaf."""
    import hashlib

    import jax
    import numpy as np
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(state.params):
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()[:16]


def one(address: str, workers: int, clients: int, out: str) -> dict:
    """(in a fresh process) one round; the stages' seconds and the coordinator's RSS."""
    from fedjax_grid.experiments import get_preset
    from fedjax_grid.runner import FederatedRun
    rss0 = _rss_mib()
    cfg = get_preset("quickstart").with_overrides([
        f"grid.scheduler={address}", "grid.allow_insecure=true", "training.rounds=1",
        f"partition.num_clients={clients}", f"training.clients_per_round={min(4, clients)}",
        "training.batch_size=1", "training.local_epochs=1", "data.max_test_examples=256",
        "model.kwargs={width: 0.125, norm: batch, head: cifar}"]).validate()
    t0 = time.perf_counter()
    notes = []
    run = FederatedRun(cfg, out_dir=out, notify=notes.append)
    try:
        rounds = run.run().rounds()
        tasks = run.records.tasks()
    finally:
        run.close()
    return {"workers": workers, "clients": clients,
            **{stage: seconds for stage, _, seconds, _ in run.stages.log},
            "total_s": time.perf_counter() - t0, "workers_seen": len(run.ledger.rows),
            "task_workers": int(tasks.loc[tasks["status"] == "ok", "worker"].nunique()),
            "clients_ok": int(rounds["clients_ok"].iloc[-1]),
            "accuracy": float(rounds["global_accuracy"].iloc[-1]), "params": params_digest(run.state),
            "sklearn_imported": "sklearn" in sys.modules,
            "notes": [m for m in notes if "worker" in m and "contributed" not in m],
            "rss_start_mib": rss0, "rss_peak_mib": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def grid_of(n: int, tmp: pathlib.Path, memory_limit: str):
    """(address, processes, seconds until all n workers were connected)."""
    from distributed import Client
    dask = shutil.which("dask") or os.path.join(os.path.dirname(sys.executable), "dask")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0")
    t = time.perf_counter()
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard", "--no-show"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    for i in range(n):
        procs.append(subprocess.Popen(
            [dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
             "--no-dashboard", "--memory-limit", memory_limit, "--name", f"desktop-{i}",
             "--local-directory", str(tmp / f"w{i}")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        with Client(address, timeout=120) as c:
            c.wait_for_workers(n, timeout=600)
    except BaseException:
        _stop(procs[1:] + procs[:1])
        raise
    return address, procs, time.perf_counter() - t


def cold_row(n: int, c: int, tmp: pathlib.Path, memory_limit: str):
    """One coordinator run of ``c`` clients on a grid of ``n`` workers started for it."""
    tmp.mkdir(parents=True)
    address, procs, up_s = grid_of(n, tmp, memory_limit)
    try:
        load0 = os.getloadavg()[0]
        r = subprocess.run([sys.executable, __file__, "--one", address, str(n), str(c),
                            str(tmp / "run")], capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            print(r.stderr[-3000:], file=sys.stderr)
            return None
        return {"grid_up_s": up_s, **json.loads(r.stdout.strip().splitlines()[-1]),
                "load": f"{load0:.0f}-{os.getloadavg()[0]:.0f}"}
    finally:
        _stop(procs[1:] + procs[:1])


COLUMNS = ["workers", "clients", "grid_up_s", "data", "model", "grid", "first_round",
           "total_s", "workers_seen", "task_workers", "clients_ok", "rss_start_mib",
           "rss_peak_mib", "accuracy", "params", "load"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[4, 32])
    ap.add_argument("--clients", type=int, nargs="+", default=[64, 1000])
    ap.add_argument("--memory-limit", default="1GiB")
    ap.add_argument("--one", nargs=4, metavar=("ADDRESS", "WORKERS", "CLIENTS", "OUT"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        address, n, c, out = args.one
        print(json.dumps(one(address, int(n), int(c), out)), flush=True)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        for n in args.workers:
            for c in args.clients:  # a fresh grid for each row: every start-up is a cold one
                row = cold_row(n, c, pathlib.Path(tmp) / f"grid-{n}-{c}", args.memory_limit)
                if row is not None:
                    rows.append(row)
                    print(row, file=sys.stderr, flush=True)
    print_table(rows)


def print_table(rows) -> None:
    """The Markdown table, then whether the parameters agree across worker counts."""
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + " --- |" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(f"{row.get(k, float('nan')):.1f}" if isinstance(row.get(k), float)
                                else str(row.get(k, "")) for k in COLUMNS) + " |")
    for c in sorted({r["clients"] for r in rows}):
        digests = {r["workers"]: r["params"] for r in rows if r["clients"] == c}
        if len(digests) > 1:
            same = len(set(digests.values())) == 1
            print(f"{c} clients: final parameters {'identical' if same else 'DIFFERENT'} across "
                  f"{', '.join(str(w) for w in sorted(digests))} workers")


if __name__ == "__main__":
    main()
