"""The event log of an emulated grid: what happened to which desktop, and when.

One JSON line per event in ``<grid folder>/events.jsonl``, appended (each line
is written with one ``write`` on an ``O_APPEND`` file, so concurrent writers --
the schedule's replayer, a notebook, the CLI -- do not interleave). Fields:

  time        Unix time (s) the action was applied
  desktop     the desktop's name ('' for the grid itself: up, down)
  event       link_down, link_up, freeze, thaw, kill, rejoin, error; for the grid ('')
              up, down, schedule (its replay (re)started: time 0 of its events)
  duration_s  planned length (link_down, freeze, kill), else null
  source      'schedule' (the profile's replayed schedule), 'api', 'cli'
  detail      free text (an error line, a worker address)

``grid_events(scheduler_address, t_start, t_end)`` returns a run's window of it
as a DataFrame (empty, with these columns, for a scheduler that is not an
emulated grid).
"""
from __future__ import annotations

import json
import os
import time
from typing import Optional

COLUMNS = ["time", "desktop", "event", "duration_s", "source", "detail"]


def log_event(path, desktop: str, event: str, *, duration_s: Optional[float] = None,
              source: str = "api", detail: str = "", t: Optional[float] = None) -> dict:
    """Append one event line to ``path``; returns the event."""
    row = {"time": time.time() if t is None else t, "desktop": desktop, "event": event,
           "duration_s": duration_s, "source": source, "detail": detail}
    line = (json.dumps(row) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return row


def read_events(path) -> list[dict]:
    """Every complete event line of ``path`` ([] when there is none)."""
    try:
        with open(path) as f:
            lines = f.readlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if isinstance(row, dict):
            out.append({c: row.get(c) for c in COLUMNS})
    return out


def grid_events(scheduler_address: str, t_start: float, t_end: float):
    """Events of the emulated grid at ``scheduler_address`` with ``t_start <= time <= t_end``
    (Unix seconds), as a DataFrame with ``COLUMNS``, oldest first."""
    import pandas as pd

    from fedjax_grid.emulation.state import find_by_address
    state = find_by_address(scheduler_address) if scheduler_address else None
    rows = read_events(state.events_path) if state is not None else []
    rows = [r for r in rows if isinstance(r["time"], (int, float)) and t_start <= r["time"] <= t_end]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def save_run_events(scheduler_address: str, out_dir, t_start: float, t_end: float):
    """Write ``grid_events.csv`` (the window ``[t_start, t_end]``) into a run's folder when
    ``scheduler_address`` is an emulated grid's; returns its path, or None."""
    import pathlib

    from fedjax_grid.atomic_write import atomic_path
    from fedjax_grid.emulation.state import find_by_address
    out_dir = pathlib.Path(out_dir)
    if not scheduler_address or find_by_address(scheduler_address) is None or not out_dir.is_dir():
        return None
    frame = grid_events(scheduler_address, t_start, t_end)
    path = out_dir / "grid_events.csv"
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path
