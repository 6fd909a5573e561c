"""Helpers of tests/plots: small realistic records tables (as docs/ARCHITECTURE.md "Records" fixes them).

3 runs x 5 rounds, 4 clients trained per round on 2 Dask workers; per run some
tasks are late, failed, rejected or offline, the way the engine records them.
"""
import pathlib

import numpy as np
import pandas as pd
from PIL import Image

WORKERS = ("tcp://10.0.0.5:40123", "tcp://10.0.0.7:38811")
RUNS = ("static", "dynamic", "hybrid")
N_ROUNDS, N_CLIENTS = 5, 4
TASK_COLUMNS = ["round", "client", "worker", "attempt", "num_samples", "local_loss",
                "local_accuracy", "start_s", "end_s", "duration_s", "status", "reason",
                "bytes_in", "bytes_out", "speed_factor"]
ROUND_COLUMNS = ["round", "global_loss", "global_accuracy", "round_time_s", "elapsed_s",
                 "clients_sampled", "clients_ok", "clients_late", "clients_failed",
                 "clients_rejected", "bytes_sent", "bytes_received"]
# (round, client) -> status forced in every run, so each status is present.
FORCED = {(1, 2): "late", (2, 3): "failed", (3, 0): "rejected", (4, 1): "offline"}


def simulate_run(seed: int, n_rounds: int = N_ROUNDS, n_clients: int = N_CLIENTS,
                 workers=WORKERS, deadline_s: float = 6.0):
    """(rounds, tasks) of one simulated run; client c runs on worker c % len(workers)."""
    rng = np.random.default_rng(seed)
    speed = {w: 1.0 + 0.5 * i for i, w in enumerate(workers)}
    tasks, rounds = [], []
    t = 0.0
    for r in range(1, n_rounds + 1):
        free = {w: t + 0.2 for w in workers}
        counts = {"ok": 0, "late": 0, "failed": 0, "rejected": 0}
        for c in range(n_clients):
            w = workers[c % len(workers)]
            status = FORCED.get((r, c), "ok")
            dur = float(rng.uniform(1.0, 2.0) * speed[w])
            start = free[w]
            end = start + dur
            if status == "late":
                end = t + deadline_s + 1.0
                dur = end - start
            if status == "offline":
                start = end = dur = np.nan
            else:
                free[w] = end
            loss = float(2.3 * np.exp(-0.35 * r) + rng.uniform(0, 0.3))
            failed_like = status in ("failed", "offline")
            tasks.append({
                "round": r, "client": c, "worker": w, "attempt": 0,
                "num_samples": 100 + 10 * c,
                "local_loss": np.nan if failed_like else loss,
                "local_accuracy": np.nan if failed_like else 1.0 - loss / 3.0,
                "start_s": start, "end_s": end, "duration_s": dur, "status": status,
                "reason": {"ok": "", "late": "deadline", "failed": "RuntimeError: boom",
                           "rejected": "non-finite update", "offline": "node offline"}[status],
                "bytes_in": 40_000, "bytes_out": 0 if failed_like else 40_000,
                "speed_factor": speed[w],
            })
            if status in counts:
                counts[status] += 1
        round_end = min(max(free.values()), t + deadline_s) + 0.3
        acc = 0.1 + 0.8 * (1 - np.exp(-0.5 * r)) + rng.uniform(-0.02, 0.02) + 0.02 * seed
        rounds.append({
            "round": r, "global_loss": float(2.3 * np.exp(-0.4 * r)),
            "global_accuracy": float(min(acc, 0.99)), "round_time_s": round_end - t,
            "elapsed_s": round_end, "clients_sampled": n_clients,
            "clients_ok": counts["ok"], "clients_late": counts["late"],
            "clients_failed": counts["failed"], "clients_rejected": counts["rejected"],
            "bytes_sent": 40_000 * n_clients, "bytes_received": 40_000 * counts["ok"],
        })
        t = round_end
    return (pd.DataFrame(rounds, columns=ROUND_COLUMNS),
            pd.DataFrame(tasks, columns=TASK_COLUMNS))


def assert_png(path, min_bytes=5_000, size=None):
    """The file at ``path`` is a valid, non-trivial PNG (optionally of ``size`` pixels)."""
    path = pathlib.Path(path)
    assert path.is_file(), path
    assert path.stat().st_size >= min_bytes, path.stat().st_size
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
    with Image.open(path) as im:
        im.load()
        assert im.width > 200 and im.height > 150, im.size
        if size is not None:
            assert im.size == size, im.size
        # not a blank canvas: more than a handful of distinct colours
        colours = im.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is not None and len(colours) > 8, len(colours or [])
    assert not list(path.parent.glob(f".{path.name}.tmp-*")), "temp file left behind"


def legend_labels(ax):
    legend = ax.get_legend()
    assert legend is not None, "axes has no legend"
    return [t.get_text() for t in legend.get_texts()]
