"""A run that folds no update stops, naming the cause (never an exit 0 at chance accuracy).

``grid.max_rounds_without_update`` (N, 0: never): synchronous rounds stop after N rounds
in a row applied no server step (no update arrived, or fewer than the quorum);
asynchronous rounds after N x K task outcomes in a row (K tasks in flight) brought no
update into the buffer. Both raise :class:`RunStalled`, a one-line error whose text is
:func:`stall_message` of the tasks of those rounds: how many ended how, the most frequent
reason and the workers it happened on. The records and the last checkpoint are written
first: the run can be resumed once the cause is fixed (a deadline, a codec, a link).
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from fedjax_grid.errors import RunStalled

__all__ = ["RunStalled", "stall_message", "stalled_rounds"]


def stall_message(task_rows: Iterable[dict], *, n: int, unit: str, done: int) -> str:
    """The one-line error of a stalled run.

    task_rows: the rows (``tasks.csv`` columns) of the stalled rounds or tasks; n: the
    setting; unit: what was counted ('rounds in a row' or 'task outcomes in a row (...)');
    done: rounds (server updates) checkpointed so far.
    """
    rows = list(task_rows)
    counts = Counter(r["status"] for r in rows)
    bad = [r for r in rows if r["status"] != "ok"]
    reasons = Counter(str(r.get("reason") or "no reason recorded").split(";")[0] for r in bad)
    if reasons:
        reason, times = reasons.most_common(1)[0]
        where = sorted({str(r.get("worker_name") or r.get("worker") or "?")
                        for r in bad if str(r.get("reason") or "no reason recorded")
                        .split(";")[0] == reason})
        cause = (f"; most often ({times}x) '{reason[:160]}' on {', '.join(where[:4])}"
                 f"{' ...' if len(where) > 4 else ''}")
    else:
        cause = "; no task finished"
    tally = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no tasks"
    return (f"no update folded in {n} {unit} (grid.max_rounds_without_update={n}): tasks "
            f"{tally}{cause}; {done} rounds are checkpointed: fix the cause and continue "
            "with --resume")


def stalled_rounds(rounds: list[dict], n: int) -> bool:
    """Whether the last ``n`` rows of the rounds table applied no server step."""
    return bool(n) and len(rounds) >= n and not any(r["quorum"] for r in rounds[-n:])
