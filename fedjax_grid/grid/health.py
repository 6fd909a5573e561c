"""Host reliability for one run (in the spirit of BOINC): which desktops get tasks.

``WorkerLedger`` keeps one row per worker address the run has seen (the records'
``workers`` table) and decides which workers are *healthy*:

- a worker whose last heartbeat reached the scheduler more than ``STALE_S`` seconds
  ago is not offered work this round (a frozen or sleeping desktop);
- a worker that fails the set-up check (fedjax_grid not importable, another
  fedjax_grid version, the worker plugin failed) or fails ``quarantine_after``
  tasks in a row is **quarantined** for the rest of the run: it receives no more
  tasks (the engine submits with ``workers=<healthy>``), which is recorded once in
  the table and said once through ``notify``.

Every call that talks to workers is bounded in time (``each_worker``), so a frozen
desktop can slow a check by at most its timeout, never hang it.
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable, Iterable, Optional

#: A worker whose last heartbeat is older than this (seconds) is treated as frozen.
STALE_S = 5.0
#: Seconds the set-up check waits for a worker's answer: ``PROBE_TIMEOUT_S`` +
#: ``PROBE_S_PER_WORKER`` x the workers checked at once (``probe_timeout_s``): the checks
#: run concurrently, and workers that share a machine answer more slowly the more they are.
PROBE_TIMEOUT_S = 5.0
PROBE_S_PER_WORKER = 0.25
#: While connected workers answer that they are still setting up (importing JAX for the
#: worker plugin), the wait for the first healthy one goes on past
#: ``grid.wait_for_workers_s`` by up to this many seconds per connected worker (importing
#: JAX costs CPU seconds per worker: 32 workers on one 2-core machine take minutes).
SETUP_S_PER_WORKER = 10.0


class NoWorkersError(ConnectionError):
    """No healthy worker joined within ``grid.wait_for_workers_s`` (an ``OSError``)."""


def setup_report() -> dict:
    """(runs on a worker) fedjax_grid's version there and whether the plugin set it up.

    Pickled by reference: on a worker where fedjax_grid cannot be imported, calling
    it fails with ``ModuleNotFoundError`` before anything runs.
    """
    from fedjax_grid import version
    from fedjax_grid.grid.plugin import WORKER_STATE
    return {"version": version.__version__, "configured": bool(WORKER_STATE["configured"]),
            "setting_up": bool(WORKER_STATE.get("setting_up")),
            "setup_error": WORKER_STATE.get("setup_error")}


def probe_timeout_s(n: int) -> float:
    """Seconds the set-up check of ``n`` workers at once waits for each answer."""
    return PROBE_TIMEOUT_S + PROBE_S_PER_WORKER * max(0, n)


def still_setting_up(result, expected_version: str) -> bool:
    """Whether a ``setup_report`` result says the plugin's set-up is still running there
    (or has not started yet: the plugin reaches every worker when it registers, and a
    worker whose JAX is not configured yet must not compute -- other numbers)."""
    return (isinstance(result, dict) and result.get("version") == expected_version
            and not result.get("configured") and not result.get("setup_error"))


def scheduler_worker_view(dask_scheduler=None) -> dict:
    """(runs on the scheduler) address -> {name, age_s: seconds since its last heartbeat,
    nthreads: its task slots}."""
    now = time.time()
    return {a: {"name": str(ws.name), "age_s": max(0.0, now - ws.last_seen),
                "nthreads": int(ws.nthreads)}
            for a, ws in dask_scheduler.workers.items()}


def worker_view(dask_client) -> dict:
    """Worker address -> {'name', 'age_s', 'nthreads'} as the scheduler sees them now."""
    try:
        return dask_client.run_on_scheduler(scheduler_worker_view)
    except Exception:  # noqa: BLE001 - fall back to the Dask client's (less precise) view
        info = dask_client.scheduler_info(n_workers=-1).get("workers", {})
        return {a: {"name": str(w.get("name", a)), "age_s": 0.0,
                    "nthreads": int(w.get("nthreads", 1))} for a, w in info.items()}


def each_worker(dask_client, function, workers: Iterable[str], timeout_s: float) -> dict:
    """Run ``function()`` on each worker concurrently, each bounded by ``timeout_s`` seconds.

    Returns address -> result, or the exception it raised (``asyncio.TimeoutError``
    for a worker that did not answer in time, e.g. a frozen desktop).
    """
    workers = list(workers)
    if not workers:
        return {}

    async def one(w):
        res = await asyncio.wait_for(
            dask_client._run(function, workers=[w], on_error="return"), timeout_s)
        return res.get(w, ConnectionError(f"worker {w} left"))

    async def all_of():
        out = await asyncio.gather(*(one(w) for w in workers), return_exceptions=True)
        return dict(zip(workers, out))

    return dask_client.sync(all_of, callback_timeout=timeout_s + 5.0)


def setup_problem(result, expected_version: str) -> Optional[str]:
    """Why a worker's ``setup_report`` result disqualifies it (None: it is fine)."""
    if isinstance(result, BaseException) and (
            "No module named 'fedjax_grid" in str(result) or (
                isinstance(result, ImportError) and "fedjax_grid" in str(result))):
        return "fedjax_grid cannot be imported there (not installed)"
    if isinstance(result, asyncio.TimeoutError):
        return None  # unresponsive now: not offered work while frozen, checked again later
    if isinstance(result, BaseException):
        return f"set-up check failed: {type(result).__name__}: {str(result).splitlines()[0] if str(result) else ''}"
    if result.get("version") != expected_version:
        return (f"runs fedjax_grid {result.get('version')}, the coordinator {expected_version}: "
                "install the same version")
    if result.get("setup_error"):
        return f"worker set-up failed: {result['setup_error']}"
    return None


class WorkerLedger:
    """Per-run reliability record of every worker (the records' ``workers`` table).

    quarantine_after: consecutive failed tasks that quarantine a worker (0: never).
    notify: called once with a one-line message per quarantine.
    t0: the run's start (seconds since the epoch); ``first_seen_s`` is relative to it.
    """

    def __init__(self, expected_version: str, quarantine_after: int = 3,
                 notify: Callable[[str], None] = lambda msg: None,
                 rows: Iterable[dict] = ()):
        self.expected_version = expected_version
        self.quarantine_after = quarantine_after
        self.notify = notify
        self.rows: dict[str, dict] = {r["address"]: dict(r) for r in rows}
        self._streak: dict[str, int] = {}
        self._checked: set[str] = {a for a, r in self.rows.items() if r.get("quarantined")}
        #: workers whose last set-up check answered "still setting up" (alive, importing)
        self.setting_up: set[str] = set()

    def _row(self, address: str, name: str = "", t0: Optional[float] = None) -> dict:
        if address not in self.rows:
            self.rows[address] = {
                "address": address, "name": name or address,
                "first_seen_s": (time.time() - t0) if t0 is not None else 0.0,
                "tasks_ok": 0, "tasks_failed": 0, "tasks_late": 0,
                "quarantined": False, "why": ""}
        return self.rows[address]

    def quarantine(self, address: str, why: str) -> bool:
        """Quarantine ``address`` for the rest of the run; True when it is news."""
        row = self._row(address)
        if row["quarantined"]:
            return False
        row["quarantined"], row["why"] = True, why
        self.notify(f"worker {address} ({row['name']}) quarantined for this run: {why}")
        return True

    def is_quarantined(self, address: str) -> bool:
        return bool(self.rows.get(address, {}).get("quarantined"))

    def check_new(self, dask_client, view: dict, t0: Optional[float]) -> None:
        """Add workers not seen before and run the set-up check on them (bounded)."""
        new = [a for a in view if a not in self._checked]
        for a in view:
            self._row(a, view[a]["name"], t0)
        fresh = [a for a in new if view[a]["age_s"] <= STALE_S]
        if not fresh:
            return
        results = each_worker(dask_client, setup_report, fresh, probe_timeout_s(len(fresh)))
        for a, res in results.items():
            if still_setting_up(res, self.expected_version):
                self.setting_up.add(a)  # alive and importing: check it again on the next poll
                continue
            self.setting_up.discard(a)
            why = setup_problem(res, self.expected_version)
            if isinstance(res, asyncio.TimeoutError):
                continue  # check it again when it answers
            self._checked.add(a)
            if why:
                self.quarantine(a, why)

    def healthy(self, view: dict) -> list[str]:
        """Checked, not quarantined, recently heard-from workers of ``view`` (sorted)."""
        return sorted(a for a, w in view.items()
                      if a in self._checked and not self.is_quarantined(a)
                      and w["age_s"] <= STALE_S)

    def record(self, address: str, status: str) -> None:
        """Count one task outcome ('ok' | 'failed' | 'late' | 'rejected') of ``address``."""
        if not address:
            return
        row = self._row(address)
        if status in ("ok", "rejected"):  # it computed; a rejected update is the client's fault
            row["tasks_ok"] += status == "ok"
            self._streak[address] = 0
        elif status == "late":
            row["tasks_late"] += 1
        elif status == "failed":
            row["tasks_failed"] += 1
            self._streak[address] = self._streak.get(address, 0) + 1
            n = self._streak[address]
            if self.quarantine_after and n >= self.quarantine_after:
                self.quarantine(address, f"{n} tasks failed in a row")

    def table_rows(self) -> list[dict]:
        return [dict(r) for _, r in sorted(self.rows.items())]


def wait_for_healthy(ledger: WorkerLedger, dask_client, *, grace_s: float, t0: Optional[float],
                     notify: Callable[[str], None], check: Callable[[], None] = lambda: None,
                     poll_s: float = 1.0, setup_s_per_worker: float = 0.0) -> list[str]:
    """Healthy worker addresses, waiting up to ``grace_s`` seconds for one to appear.

    While connected workers answer that they are still setting up (a worker importing
    JAX is not a dead one), the wait goes on up to ``grace_s`` + ``setup_s_per_worker`` x
    the connected workers (``setup_bound_s``). Says once through ``notify`` that it is
    waiting (and again when workers are ready); raises ``NoWorkersError`` (one line) when
    none is healthy after that. ``check()`` is called on every poll (e.g. to notice a lost
    scheduler).
    """
    start = time.time()
    said = ""
    while True:
        check()
        view = worker_view(dask_client)
        ledger.check_new(dask_client, view, t0)
        healthy = ledger.healthy(view)
        if healthy:
            if said:
                notify(f"{len(healthy)} worker(s) {'ready' if said == 'setup' else 'available again'}"
                       f" after {time.time() - start:.0f} s; continuing")
            return healthy
        waited = time.time() - start
        setting_up = [a for a in view if a in ledger.setting_up and view[a]["age_s"] <= STALE_S]
        bound = setup_bound_s(grace_s, setup_s_per_worker, len(view)) if setting_up else grace_s
        if waited >= bound:
            raise NoWorkersError(_no_workers_line(ledger, view, waited, grace_s,
                                                  setup_s_per_worker, setting_up))
        kind = "setup" if setting_up and setup_s_per_worker > 0 else "gone"
        if kind != said:
            notify(_waiting_line(kind, view, setting_up, bound, grace_s, setup_s_per_worker))
            said = kind
        time.sleep(min(poll_s, max(0.05, bound - waited)))


def setup_bound_s(grace_s: float, setup_s_per_worker: float, connected: int) -> float:
    """The longest wait for a first healthy worker while ``connected`` workers set up."""
    return grace_s + setup_s_per_worker * connected


def _waiting_line(kind, view, setting_up, bound, grace_s, per) -> str:
    if kind == "setup":
        return (f"{len(setting_up)} of {len(view)} connected worker(s) still setting up "
                f"(importing JAX); waiting up to {bound:.0f} s (grid.wait_for_workers_s="
                f"{grace_s:g} + {per:g} s x {len(view)} workers) for the first")
    return (f"no healthy worker connected ({len(view)} connected); waiting up to "
            f"{grace_s:g} s (grid.wait_for_workers_s) for desktops to return")


def _no_workers_line(ledger, view, waited, grace_s, per, setting_up) -> str:
    quarantined = sum(1 for a in view if ledger.is_quarantined(a))
    if setting_up and per > 0:
        bound = setup_bound_s(grace_s, per, len(view))
        return (f"no healthy worker for {waited:.0f} s: {len(setting_up)} of {len(view)} "
                f"connected still setting up (importing JAX) past the set-up bound of "
                f"{bound:g} s (grid.wait_for_workers_s={grace_s:g} + {per:g} s x {len(view)} "
                f"workers); {quarantined} quarantined. Allowed: fewer workers per machine or "
                "a larger grid.wait_for_workers_s")
    return (f"no healthy worker for {waited:.0f} s (grid.wait_for_workers_s={grace_s:g}; "
            f"{len(view)} connected, {quarantined} of them quarantined)")
