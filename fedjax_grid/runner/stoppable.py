"""Work on the coordinator that a Stop may abandon (the global model's evaluation).

``run_stoppable(work, should_stop)`` runs ``work(check)`` in a daemon thread and waits
for it while polling ``should_stop()`` every ``poll_s`` seconds. When Stop is pressed,
the caller gets ``Abandoned`` at once -- even while the work is inside one long call
(an XLA compilation, a large batch) -- and the work itself ends at its next
``check()``, which raises inside it. What the work computed is dropped; nothing it
does may change the run's state. JAX's compile events are counted per thread
(``training.compile_meter``), so the thread's compilation comes back with the result.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from fedjax_grid.training.compile_meter import compile_seconds

#: seconds between two looks at ``should_stop`` while the work runs
POLL_S = 0.05


class Abandoned(Exception):
    """Stop was pressed: the work was abandoned (in the caller) or is to end (inside it)."""


def run_stoppable(work: Callable[[Callable[[], None]], Any], should_stop: Callable[[], bool],
                  poll_s: float = POLL_S) -> tuple[Any, float]:
    """``(work(check), seconds the work spent compiling)``; ``Abandoned`` when
    ``should_stop()`` turns true first. An exception of ``work`` is raised here."""
    if should_stop():
        raise Abandoned()
    abandoned, done, out = threading.Event(), threading.Event(), {}

    def check() -> None:
        if abandoned.is_set():
            raise Abandoned()

    def body() -> None:
        c0 = compile_seconds()
        try:
            out["value"] = work(check)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            out["error"] = e
        out["compile_s"] = compile_seconds() - c0
        done.set()

    threading.Thread(target=body, name="fedjax-grid-stoppable", daemon=True).start()
    while not done.wait(poll_s):
        if should_stop():
            abandoned.set()
            raise Abandoned()
    if "error" in out:
        raise out["error"]
    return out["value"], out["compile_s"]
