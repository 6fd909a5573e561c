"""``python -m fedjax_grid.emulation.replay PREFIX``: replay a grid's availability schedule.

Started by ``grid up`` (stopped by ``grid down``). Draws the events of the
profile's schedule for the grid's desktops (``schedule.draw``, the grid's seed)
and applies each start and end action at its time after the schedule's time 0
(when the grid came up, or ``grid schedule`` restarted it):
link down/up, freeze/thaw, kill/rejoin, each logged with source 'schedule'. An
action that fails is logged as an 'error' event and the replay goes on.
"""
from __future__ import annotations

import sys
import time

from fedjax_grid.emulation.control import GridControl
from fedjax_grid.emulation.events import log_event
from fedjax_grid.emulation.profiles import Profile
from fedjax_grid.emulation.schedule import draw, timeline
from fedjax_grid.emulation.state import load


def replay(prefix: str, clock=time.time, sleep=time.sleep) -> int:
    """Apply the grid's schedule; returns the number of actions applied."""
    state = load(prefix)
    t0 = None if state is None else (state.schedule_t0 or state.ready_at)
    if t0 is None:
        return 0
    profile = Profile.model_validate(state.profile)
    events = draw(profile.schedule, [d.name for d in state.desktops], seed=state.seed)
    control = GridControl(state, source="schedule")
    applied = 0
    for t, desktop, action, event in timeline(events):
        wait = t0 + t - clock()
        if wait > 0:
            sleep(wait)
        try:
            if action in ("link_down", "freeze", "kill"):  # its end is a later action
                getattr(control, action)(desktop, event.duration_s, restore=False)
            else:
                getattr(control, action)(desktop)
            applied += 1
        except Exception as e:  # noqa: BLE001 - logged, the replay goes on
            log_event(state.events_path, desktop, "error", source="schedule",
                      detail=f"{action}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return applied


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    replay(argv[0])


if __name__ == "__main__":
    main()
