"""Rows of the records' tables, built the same way by every round policy.

``task_row`` is one row of ``tasks.csv`` (columns: :data:`fedjax_grid.grid.records.TASK_COLUMNS`,
described in docs/ARCHITECTURE.md "Records"); ``round_row`` one row of ``rounds.csv``.
Both are pure functions of what they are given.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np

from fedjax_grid.hazards import faults as fault_sim


def task_row(config, r: int, k: int, attempt: int, status: str, *, t0: float,
             res: Optional[dict] = None, span: Optional[tuple] = None, reason: str = "",
             worker: str = "", worker_name: str = "") -> dict:
    """A task row; ``r`` is the 0-based round index, recorded as round ``r + 1`` and
    (synchronous rounds) version ``r``, staleness 0.

    res: the task's result (its worker, times, metrics, fault plan), or None for a task
    without one -- then ``span`` = (start, end) in seconds since the epoch (default:
    now) and ``worker`` / ``worker_name`` say where it ran ('' when it reached no worker).
    The fault plan is not drawn again: the speed factor is the client's own (with
    ``faults.slow_by: worker``, the factor the worker drew, from ``res['plan']``; 1.0 for a
    task without a result), and a hostile update is named from the plan the task ran."""
    plan = (res or {}).get("plan") or {}
    if res is not None:
        start, end = res["start"], res["end"]
        worker, worker_name = res.get("worker", ""), res.get("worker_name", "")
    elif span is not None:
        start, end = span
    else:
        start = end = time.time()
    m = (res or {}).get("metrics", {})
    if plan.get("attack") and status in ("ok", "rejected"):
        reason = f"{reason}; " if reason else ""
        reason += f"hostile client (simulated {plan['attack']} x{plan['attack_scale']:g})"
    return {"round": int(r) + 1, "client": int(k), "worker": worker, "worker_name": worker_name,
            "attempt": int(attempt),
            "num_samples": int((res or {}).get("num_examples", 0)),
            "local_loss": float(m.get("loss", np.nan)),
            "local_accuracy": float(m.get("accuracy", np.nan)),
            "start_s": start - t0, "end_s": end - t0, "duration_s": end - start,
            "status": status, "reason": str(reason)[:300],
            "bytes_in": 0, "bytes_out": int((res or {}).get("bytes_out", 0)),
            "speed_factor": (float(plan["speed_factor"]) if plan.get("worker_max_slowdown")
                             else fault_sim.speed_factor(config.faults, config.seed, int(k))),
            "version": int(r), "staleness": 0, "codec": str(config.server.codec),
            "transfer_s": float((res or {}).get("transfer_s", 0.0)),
            "compile_s": float(res["compile_s"]) if res and "compile_s" in res else np.nan}


def eval_columns(metrics: dict) -> dict:
    """The rounds-table columns of an evaluation's ``metrics`` ({}: all empty)."""
    return {"global_loss": float(metrics.get("loss", np.nan)),
            "global_accuracy": float(metrics.get("accuracy", np.nan)),
            "logit_spread": metrics.get("logit_spread", np.nan),
            "logit_spread_train": metrics.get("logit_spread_train", np.nan),
            "bn_collapse": metrics.get("bn_collapse")}


def round_row(round_: int, metrics: dict, counts: dict, *, t_start: float, t0: float,
              sampled: int, quorum: bool, sent: int, received: int,
              compile_s: float = 0.0, evaluation: str = "done") -> dict:
    """A rounds-table row: the evaluation's ``metrics`` ({} when not evaluated;
    ``evaluation`` says why, ``grid.records.EVALUATIONS``), the task ``counts``
    (``Records.task_counts``), the wall time since ``t_start`` (less the ``compile_s``
    seconds of compilation the round waited for, recorded apart) and since ``t0``, and
    the bytes sent to / received from the workers."""
    now = time.time()
    return {"round": int(round_), **eval_columns(metrics), "evaluation": evaluation,
            "round_time_s": max(0.0, now - t_start - compile_s), "elapsed_s": now - t0,
            "compile_s": float(compile_s),
            "clients_sampled": int(sampled), **counts, "quorum": bool(quorum),
            "bytes_sent": int(sent), "bytes_received": int(received)}
