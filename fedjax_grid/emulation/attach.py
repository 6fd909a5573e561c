"""Reaching an emulated grid from a coordinator: its scheduler lives in the hub namespace.

The coordinator sends the broadcast straight to each worker (``dispatch`` scatters
with ``direct=True``), so it must reach the desktops' addresses, not only the
scheduler's: a port forwarded to the root namespace would not do. The coordinator
joins the hub namespace instead, as a coordinator on the scheduler's LAN would:

* ``enter(address)``: the calling thread joins the hub of the grid whose scheduler
  is ``address`` (threads it starts afterwards, such as a Dask Client's IO loop,
  are there too). ``fedjax-grid run --scheduler ADDRESS`` calls it first thing.
* ``run_in_namespace(ns, fn)``: ``fn()`` on a fresh thread inside namespace ``ns``.
* ``client(state)``: a Dask ``Client`` whose IO loop runs in the hub (for tests,
  ``grid up``'s wait for the workers, and notebooks).
"""
from __future__ import annotations

import threading
from typing import Optional

from fedjax_grid.errors import UserError, show


def run_in_namespace(ns: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on a new thread that first joins network namespace ``ns``."""
    out: dict = {}

    def target():
        try:
            from pyroute2 import netns
            netns.setns(ns, flags=0)
            out["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            out["error"] = e

    t = threading.Thread(target=target, name=f"in-{ns}", daemon=True)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def enter(address: str):
    """Join the hub namespace of the emulated grid whose scheduler is at ``address``
    (this thread and the threads it starts later); returns its ``GridState``, or None
    when ``address`` is not an emulated grid's (then nothing changes)."""
    import os

    from fedjax_grid.emulation.state import find_by_address
    state = find_by_address(address)
    if state is None:
        return None
    if os.geteuid() != 0:
        raise UserError(f"--scheduler {show(address)} is an emulated grid ({state.prefix}), "
                        "reachable only from its network namespace: run as root")
    from pyroute2 import netns
    try:
        netns.setns(state.hub_ns, flags=0)
    except OSError:
        raise UserError(f"--scheduler {show(address)}: the emulated grid {state.prefix} is gone "
                        f"(its namespace {state.hub_ns} does not exist); start one with "
                        "`fedjax-grid grid up`, or remove it with `fedjax-grid grid down`") from None
    return state


def security(state):
    """Dask Security of the grid's coordinator (its client certificate)."""
    from fedjax_grid.grid.certs import client_security
    return client_security(state.tls_dir)


def client(state, timeout_s: float = 30.0):
    """A connected ``distributed.Client`` to the grid, its IO loop inside the hub."""
    import distributed
    return run_in_namespace(state.hub_ns, lambda: distributed.Client(
        state.address, security=security(state), timeout=timeout_s))


def worker_names(state, timeout_s: float = 10.0) -> Optional[dict]:
    """Worker name -> address as the scheduler sees them (None: scheduler not reached)."""
    try:
        c = client(state, timeout_s)
    except (OSError, TimeoutError):
        return None
    try:
        info = c.scheduler_info(n_workers=-1).get("workers", {})
        return {str(w.get("name")): a for a, w in info.items()}
    finally:
        c.close()
