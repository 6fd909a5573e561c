"""``fedjax-grid grid ...``: an emulated desktop grid on this machine (root).

  fedjax-grid grid up [--profile NAME|FILE] [--desktops N] [--seed S] [--no-schedule]
  fedjax-grid grid status [--grid PREFIX|ADDRESS]
  fedjax-grid grid down [--grid PREFIX|ADDRESS] [--all]
  fedjax-grid grid schedule [--seed S] [--grid ...]    (re)start the availability schedule now
  fedjax-grid grid link-down|link-up|freeze|thaw|kill|rejoin DESKTOP [--grid ...]

``up`` prints one line per desktop and, as its last line, ``scheduler: ADDRESS``;
``fedjax-grid run --scheduler ADDRESS`` takes that address unchanged (it finds the
grid's certificates and joins its hub namespace by itself).
"""
from __future__ import annotations

import argparse

from fedjax_grid.errors import UserError, show

ACTIONS = ("link-down", "link-up", "freeze", "thaw", "kill", "rejoin")

EPILOG = """\
profiles (--profile): office, home (default), laptops, or a YAML file; see `fedjax-grid presets`.

example:
  fedjax-grid grid up --desktops 3
  fedjax-grid run --scheduler tls://10.x.y.1:8786 --set training.rounds=2
  fedjax-grid grid status
  fedjax-grid grid down
"""


def add_parser(sub) -> None:
    """Register ``grid`` and its subcommands on the CLI's subparsers ``sub``."""
    grid = sub.add_parser("grid", help="an emulated desktop grid on this machine (root)",
                          epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                          description="Emulated desktops: dask workers in their own network "
                                      "namespaces, links and cgroups.")
    gsub = grid.add_subparsers(dest="grid_command", parser_class=type(grid))
    up = gsub.add_parser("up", help="start a scheduler and N desktops")
    up.add_argument("--profile", default="home", help="grid profile name or YAML file (default: home)")
    up.add_argument("--desktops", type=int, help="how many desktops (default: the profile's)")
    up.add_argument("--seed", type=int, help="seed of the availability schedule (default: the profile's)")
    up.add_argument("--no-schedule", action="store_true",
                    help="do not replay the profile's availability schedule")
    status = gsub.add_parser("status", help="list the desktops and their state")
    status.add_argument("--grid", help="a grid's prefix or scheduler address (default: all)")
    down = gsub.add_parser("down", help="remove a grid: processes, namespaces, links, cgroups")
    down.add_argument("--grid", help="a grid's prefix or scheduler address")
    down.add_argument("--all", action="store_true", help="remove every emulated grid")
    sched = gsub.add_parser("schedule", help="(re)start replaying the profile's availability "
                                              "schedule with time 0 now (e.g. right before a run)")
    sched.add_argument("--seed", type=int, help="its seed (default: the grid's)")
    sched.add_argument("--grid", help="a grid's prefix or scheduler address")
    for action in ACTIONS:
        p = gsub.add_parser(action, help=f"{action.replace('-', ' ')} one desktop now")
        p.add_argument("desktop")
        p.add_argument("--grid", help="a grid's prefix or scheduler address")


def cmd_grid(args) -> int:
    handlers = {"up": _up, "status": _status, "down": _down, "schedule": _schedule}
    if args.grid_command is None:
        raise UserError("grid: a subcommand is required; allowed: up, status, down, schedule, "
                        + ", ".join(ACTIONS))
    return handlers.get(args.grid_command, _act)(args)


def _up(args) -> int:
    from fedjax_grid.emulation.lifecycle import up
    from fedjax_grid.emulation.profiles import load_profile
    from fedjax_grid.emulation.support import require
    require()
    profile = load_profile(args.profile)
    _check_seed(args.seed)
    state = up(profile, args.desktops, schedule=not args.no_schedule, seed=args.seed,
               say=lambda line: print(line, flush=True), source="cli")
    print(f"grid {state.prefix}: profile {profile.name}, {len(state.desktops)} desktops, "
          f"certificates in {state.tls_dir}")
    _print_desktops(state)
    _note_oversubscribed(state)
    print(_schedule_line(state, profile, not args.no_schedule))
    print(f"run on it: fedjax-grid run --scheduler {state.address}; remove it: "
          f"fedjax-grid grid down --grid {state.prefix}")
    print(f"scheduler: {state.address}", flush=True)
    return 0


def _note_oversubscribed(state) -> None:
    """A note when the desktops' CPU shares add up to more than this machine's cores."""
    import os
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    total = sum(d.cpu for d in state.desktops)
    if cores and total > cores:
        print(f"note: the desktops' CPU shares add up to {total:g} cores, more than this machine's "
              f"{cores}: a quota is a ceiling, and busy desktops will get less")


def _schedule_line(state, profile, replay: bool) -> str:
    from fedjax_grid.emulation.schedule import draw
    if not replay or profile.schedule.empty:
        return "schedule: none (desktops stay up)"
    events = draw(profile.schedule, [d.name for d in state.desktops], seed=state.seed)
    kinds = ", ".join(f"{sum(e.kind == k for e in events)} {k}" for k in ("link_down", "freeze", "kill")
                      if getattr(profile.schedule, k) is not None)
    return (f"schedule: seed {state.seed}, {kinds} in {profile.schedule.horizon_s:g} s from "
            f"{profile.schedule.start_after_s:g} s; events logged to {state.events_path}")


def _print_desktops(state) -> None:
    from fedjax_grid.emulation.control import GridControl
    from fedjax_grid.emulation.profiles import format_bytes, format_rate
    for row in GridControl(state).status():
        print(f"  {row['name']:8s} {row['kind']:8s} cpu {100 * row['cpu']:5.0f}% of a core  "
              f"memory {format_bytes(row['memory_bytes']):>7s}  down {format_rate(row['down_bps']):>8s}/s"
              f"  up {format_rate(row['up_bps']):>8s}/s  {row['address']:15s} {row['state']}")


def _select(which, all_: bool = False):
    """The grids ``--grid`` names (a prefix or scheduler address), or all of them."""
    from fedjax_grid.emulation.state import all_states, find_by_address, load
    if which:
        state = load(which) if which.startswith("fjg") and "://" not in which else None
        state = state or find_by_address(which)
        if state is None:
            known = ", ".join(f"{s.prefix} ({s.address})" for s in all_states()) or "none is up"
            raise UserError(f"--grid {show(which)} is not an emulated grid; allowed: {known}")
        return [state]
    return all_states()


def _status(args) -> int:
    from fedjax_grid.emulation.processes import alive
    states = _select(args.grid)
    if not states:
        print("no emulated grid is up (start one with `fedjax-grid grid up`)")
    for s in states:
        sched = "running" if alive(s.procs.get("scheduler")) else "dead"
        replay = "replaying its schedule" if alive(s.procs.get("replay")) else "no schedule running"
        note = "" if s.ready_at else " (incomplete: its `grid up` did not finish; remove it with `grid down`)"
        print(f"grid {s.prefix}: profile {s.profile_name}, scheduler {s.address} {sched}, {replay}{note}")
        _print_desktops(s)
    return 0


def _down(args) -> int:
    from fedjax_grid.emulation.lifecycle import down
    states = _select(args.grid)
    if not states:
        print("no emulated grid is up: nothing to remove")
        return 0
    if len(states) > 1 and not args.all:
        raise UserError("several emulated grids are up ("
                        + ", ".join(f"{s.prefix} {s.address}" for s in states)
                        + "): give --grid PREFIX or --all")
    for s in states:
        removed = down(s)
        print(f"grid {s.prefix} removed: {removed['namespaces']} namespaces (with their links), "
              f"{removed['cgroups']} cgroups, its processes and files")
    return 0


def _check_seed(seed) -> None:
    if seed is not None and not 0 <= seed < 2 ** 31:
        raise UserError(f"--seed={show(seed)} is invalid: an integer in [0, 2**31) is required")


def _one_grid(which):
    states = _select(which)
    if len(states) != 1:
        raise UserError("no emulated grid is up" if not states else
                        "several emulated grids are up: give --grid PREFIX")
    return states[0]


def _schedule(args) -> int:
    from fedjax_grid.emulation.lifecycle import start_schedule
    from fedjax_grid.emulation.profiles import Profile
    _check_seed(args.seed)
    state = _one_grid(args.grid)
    profile = Profile.model_validate(state.profile)
    if profile.schedule.empty:
        raise UserError(f"grid {state.prefix}: profile {profile.name} has no availability schedule "
                        "(no link_down, freeze or kill hazards)")
    start_schedule(state, args.seed, source="cli")
    print(_schedule_line(state, profile, True) + " (time 0: now)")
    return 0


def _act(args) -> int:
    from fedjax_grid.emulation.control import GridControl
    control = GridControl(_one_grid(args.grid), source="cli")
    getattr(control, args.grid_command.replace("-", "_"))(args.desktop)
    print(f"{args.desktop}: {control.desktop_state(args.desktop)}")
    return 0
