"""The state file of an emulated grid: everything ``grid up`` made, so ``grid down``
removes exactly that.

One JSON file per grid, ``<grids dir>/<prefix>.json``, written atomically; the
grid's own files (certificates, logs, the event log, Dask scratch space) live in
``<grids dir>/<prefix>/``. The grids dir is ``$FEDJAX_GRID_GRIDS_DIR`` or
``~/.fedjax_grid/grids``.

``up`` writes ahead: each namespace, link and cgroup is listed before it is
made, each process as soon as it is started (with its start time, so a reused
PID is never taken for it). A crash of ``up`` at any point leaves a file that
names at least everything that exists; ``down`` removes what of it exists.
"""
from __future__ import annotations

import os
import pathlib
import time
from typing import Optional

import pydantic
from filelock import FileLock

from fedjax_grid.atomic_write import write_atomic


def grids_dir() -> pathlib.Path:
    """Where state files live: $FEDJAX_GRID_GRIDS_DIR or ~/.fedjax_grid/grids."""
    env = os.environ.get("FEDJAX_GRID_GRIDS_DIR")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".fedjax_grid" / "grids"


class Proc(pydantic.BaseModel):
    """A process the grid started: its PID and start time (clock ticks after boot)."""
    pid: int
    start: int


class Desktop(pydantic.BaseModel):
    """One emulated desktop: its resources (units: cores, bytes, bits/s) and names."""
    index: int
    name: str
    kind: str
    cpu: float
    memory_bytes: int
    up_bps: float
    down_bps: float
    netns: str
    hub_link: str
    desktop_link: str
    address: str
    cgroup: str
    proc: Optional[Proc] = None
    worker_address: Optional[str] = None


class GridState(pydantic.BaseModel):
    prefix: str
    created: float
    profile_name: str
    profile: dict
    seed: int
    address: str
    hub_ns: str
    bridge: str
    namespaces: list[str] = []
    cgroups: list[str] = []        # relative cgroup paths, children before parents
    cgroup_version: Optional[str] = None
    cgroup_mounts: dict | str | None = None
    procs: dict[str, Proc] = {}    # 'up', 'scheduler', 'replay' -> process
    desktops: list[Desktop] = []
    ready_at: Optional[float] = None      # every worker registered (Unix time)
    schedule_t0: Optional[float] = None   # the replayed schedule's time 0 (Unix time)

    @property
    def folder(self) -> pathlib.Path:
        return grids_dir() / self.prefix

    @property
    def tls_dir(self) -> pathlib.Path:
        return self.folder / "tls"

    @property
    def events_path(self) -> pathlib.Path:
        return self.folder / "events.jsonl"

    def desktop(self, name: str) -> Desktop:
        for d in self.desktops:
            if d.name == name:
                return d
        raise KeyError(name)


def state_path(prefix: str) -> pathlib.Path:
    return grids_dir() / f"{prefix}.json"


def lock(prefix: str) -> FileLock:
    """The lock held while a grid's state file is read, changed and written."""
    grids_dir().mkdir(parents=True, exist_ok=True)
    return FileLock(str(grids_dir() / f".{prefix}.lock"), timeout=30)


def save(state: GridState) -> None:
    """Write the state file atomically (readers see the old or the new file)."""
    grids_dir().mkdir(parents=True, exist_ok=True)
    write_atomic(state_path(state.prefix), state.model_dump_json(indent=1), fsync=True)


def load(prefix: str) -> Optional[GridState]:
    """The grid's state, or None when it has no (readable) state file."""
    try:
        return GridState.model_validate_json(state_path(prefix).read_text())
    except (OSError, ValueError):
        return None


def all_states() -> list[GridState]:
    """Every grid with a state file, oldest first."""
    d = grids_dir()
    if not d.is_dir():
        return []
    states = [load(p.stem) for p in sorted(d.glob("fjg*.json"))]
    return sorted((s for s in states if s is not None), key=lambda s: s.created)


def find_by_address(address: str) -> Optional[GridState]:
    """The grid whose scheduler is at ``address`` (with or without ``tls://``)."""
    bare = address.split("://", 1)[-1]
    for s in all_states():
        if s.address == address or s.address.split("://", 1)[-1] == bare:
            return s
    return None


def forget(prefix: str) -> None:
    """Delete the state file and its lock (the grid is gone)."""
    for p in (state_path(prefix), grids_dir() / f".{prefix}.lock"):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def now() -> float:
    return time.time()
