"""Bringing an emulated grid up and taking it down.

``up(profile, desktops)``:
  1. a fresh prefix and the state file listing every name it will use (write-ahead);
  2. the grid's certificates (``fedjax-grid certs``'s CA, node and client pairs);
  3. the hub namespace with its bridge; per desktop a namespace, a veth pair into
     the bridge, its address, its uplink/downlink shaping (tbf) and its cgroup
     (CPU quota, memory limit);
  4. ``dask scheduler`` in the hub, then each desktop's ``dask worker`` in its
     namespace and cgroup, and a wait until every worker is registered.
On any error, or Ctrl-C, what was made is removed again.

``down(state)`` stops the schedule's replayer (and an ``up`` still running), kills
every process in the grid's cgroups and namespaces (thawing frozen ones first),
removes the cgroups, then the namespaces (their veths and bridge go with them),
then the grid's folder and state file. What is already gone is skipped, so
``down`` is idempotent and finishes the job after a crash of ``up``.
"""
from __future__ import annotations

import os
import shutil
import time

from fedjax_grid.emulation import network, processes, shaping
from fedjax_grid.emulation.cgroups import Cgroup, detect
from fedjax_grid.emulation.commands import environment, scheduler_argv
from fedjax_grid.emulation.events import log_event
from fedjax_grid.emulation.naming import MAX_DESKTOPS, Names, new_prefix
from fedjax_grid.emulation.state import Desktop, GridState, all_states, forget, save
from fedjax_grid.emulation.support import EmulationUnavailable, require
from fedjax_grid.errors import UserError

#: Seconds ``up`` waits for the scheduler and then for every worker to register.
SCHEDULER_WAIT_S = 60.0
WORKERS_WAIT_S = 180.0


def _fresh_prefix() -> str:
    used = {s.prefix for s in all_states()} | {ns.split("-")[0] for ns in network.namespaces()}
    prefix = new_prefix()
    while prefix in used:
        prefix = new_prefix()
    return prefix


def plan(profile, desktops: int | None = None, seed: int | None = None) -> GridState:
    """The state of a grid about to be made: names, addresses, limits (nothing exists yet)."""
    n_desktops = profile.desktops if desktops is None else desktops
    if not 1 <= n_desktops <= MAX_DESKTOPS:
        raise UserError(f"--desktops={n_desktops} is invalid: an integer in [1, {MAX_DESKTOPS}] "
                        "is required")
    version, mounts, _ = detect()
    names = Names(_fresh_prefix())
    state = GridState(prefix=names.prefix, created=time.time(), profile_name=profile.name,
                      profile=profile.model_dump(), seed=profile.schedule.seed if seed is None else seed,
                      address=names.scheduler_address, hub_ns=names.hub_ns, bridge=names.bridge,
                      cgroup_version=version, cgroup_mounts=mounts,
                      procs={"up": processes.ref(os.getpid())})
    for i in range(n_desktops):
        m = profile.machine(i)
        state.desktops.append(Desktop(
            index=i, name=f"desk{i + 1}", kind=m.kind, cpu=m.cpu, memory_bytes=m.memory,
            up_bps=m.up, down_bps=m.down, netns=names.desktop_ns(i), hub_link=names.hub_link(i),
            desktop_link=names.desktop_link(i), address=names.desktop_ip(i),
            cgroup=names.cgroup(f"d{i}")))
    state.namespaces = [names.hub_ns] + [d.netns for d in state.desktops]
    state.cgroups = [names.cgroup("hub")] + [d.cgroup for d in state.desktops] + [names.prefix]
    return state


def _certificates(state: GridState) -> None:
    from fedjax_grid.grid.certs import create_certificates
    hosts = [Names(state.prefix).hub_ip, *(d.address for d in state.desktops), "127.0.0.1",
             "localhost"]
    create_certificates(state.tls_dir, hosts, ca_name=f"fedjax_grid emulated grid {state.prefix}")


def _network(state: GridState) -> None:
    names = Names(state.prefix)
    network.create_namespace(state.hub_ns)
    network.make_bridge(state.hub_ns, state.bridge, names.hub_ip)
    for d in state.desktops:
        network.create_namespace(d.netns)
        network.add_desktop_link(state.hub_ns, state.bridge, d.hub_link, d.netns, d.desktop_link,
                                 d.address)
        shaping.shape(d.netns, d.desktop_link, d.up_bps)     # what the desktop sends
        shaping.shape(state.hub_ns, d.hub_link, d.down_bps)  # what it receives


def _cgroups(state: GridState) -> None:
    for rel in state.cgroups[:-1]:
        Cgroup(rel, state.cgroup_version, state.cgroup_mounts).create()
    # Under contention the grid weighs as its desktops and scheduler would as processes.
    Cgroup(state.cgroups[-1], state.cgroup_version, state.cgroup_mounts).set_weight(
        100 * len(state.cgroups[:-1]))
    for d in state.desktops:
        g = Cgroup(d.cgroup, state.cgroup_version, state.cgroup_mounts)
        g.set_cpu(d.cpu)
        g.set_memory(d.memory_bytes)


def _start_processes(state: GridState, say) -> None:
    from fedjax_grid.emulation.control import start_worker
    hub = Cgroup(state.cgroups[0], state.cgroup_version, state.cgroup_mounts)
    state.procs["scheduler"] = processes.spawn(
        scheduler_argv(state), netns=state.hub_ns, cgroups=hub.dirs(),
        log_path=state.folder / "logs" / "scheduler.log", env=environment())
    save(state)
    _wait_for_scheduler(state)
    say(f"scheduler {state.address} up; starting {len(state.desktops)} desktops")
    for d in state.desktops:
        start_worker(state, d)
    save(state)
    _wait_for_workers(state)


def _wait_for_scheduler(state: GridState) -> None:
    import socket

    from fedjax_grid.emulation.attach import run_in_namespace
    host, port = state.address.split("://", 1)[1].rsplit(":", 1)
    end = time.monotonic() + SCHEDULER_WAIT_S

    def connect():
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True

    while True:
        if not processes.alive(state.procs["scheduler"]):
            raise UserError(f"dask scheduler of grid {state.prefix} exited at start; see "
                            f"{state.folder / 'logs' / 'scheduler.log'}")
        try:
            run_in_namespace(state.hub_ns, connect)
            return
        except OSError:
            if time.monotonic() > end:
                raise UserError(f"dask scheduler of grid {state.prefix} did not listen within "
                                f"{SCHEDULER_WAIT_S:g} s") from None
            time.sleep(0.2)


def _wait_for_workers(state: GridState) -> None:
    """Block until every desktop's worker is registered; record their addresses."""
    from fedjax_grid.emulation.attach import client
    c = client(state, timeout_s=SCHEDULER_WAIT_S)
    try:
        end = time.monotonic() + WORKERS_WAIT_S
        while True:
            info = c.scheduler_info(n_workers=-1).get("workers", {})
            by_name = {str(w.get("name")): a for a, w in info.items()}
            if all(d.name in by_name for d in state.desktops):
                for d in state.desktops:
                    d.worker_address = by_name[d.name]
                return
            dead = [d.name for d in state.desktops if not processes.alive(d.proc)]
            if dead or time.monotonic() > end:
                missing = [d.name for d in state.desktops if d.name not in by_name]
                why = f"exited ({', '.join(dead)})" if dead else f"not registered in {WORKERS_WAIT_S:g} s"
                raise UserError(f"grid {state.prefix}: desktop worker(s) {', '.join(missing)} "
                                f"{why}; see {state.folder / 'logs'}")
            time.sleep(0.5)
    finally:
        c.close()


def up(profile, desktops: int | None = None, *, schedule: bool = True, seed: int | None = None,
       say=lambda line: None, source: str = "api") -> GridState:
    """Make the grid of ``profile`` with ``desktops`` desktops (default: the profile's);
    ``schedule``: replay the profile's availability schedule (seed: ``seed`` or the
    profile's). Returns its state once every worker is registered; ``say`` gets
    progress lines; ``source`` labels its events ('api', 'cli')."""
    require()
    state = plan(profile, desktops, seed)
    (state.folder / "logs").mkdir(parents=True, exist_ok=True)
    save(state)
    try:
        _certificates(state)
        _network(state)
        _cgroups(state)
        _start_processes(state, say)
        state.ready_at = time.time()
        save(state)
        log_event(state.events_path, "", "up", source=source,
                  detail=f"profile {profile.name}, {len(state.desktops)} desktops")
        if schedule and not profile.schedule.empty:
            start_schedule(state, source=source)
        return state
    except BaseException as e:
        down(state)
        if isinstance(e, OSError) and not isinstance(e, UserError):
            raise EmulationUnavailable(f"grid up failed: {type(e).__name__}: "
                                       f"{str(e).splitlines()[0] if str(e) else ''}") from None
        raise


def start_schedule(state: GridState, seed: int | None = None, source: str = "api") -> None:
    """(Re)start replaying the profile's availability schedule with time 0 now (e.g. right
    before a run), with ``seed`` (default: the grid's); a replay in progress stops."""
    old = state.procs.pop("replay", None)
    processes.kill([old])
    processes.wait_gone([old], 5.0)
    if seed is not None:
        state.seed = seed
    state.schedule_t0 = time.time()
    save(state)
    log_event(state.events_path, "", "schedule", source=source, detail=f"seed {state.seed}")
    start_replayer(state)


def start_replayer(state: GridState) -> None:
    """Start the process that replays the profile's schedule (``emulation.replay``)."""
    import subprocess
    import sys
    with open(state.folder / "logs" / "replay.log", "ab") as log:
        p = subprocess.Popen([sys.executable, "-m", "fedjax_grid.emulation.replay", state.prefix],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True, env=environment())
    state.procs["replay"] = processes.ref(p.pid)
    save(state)


def _stop_processes(state: GridState) -> None:
    me = os.getpid()
    others = [p for role, p in state.procs.items() if role != "scheduler" and p.pid != me]
    processes.kill(others)  # the replayer, and an `up` still running
    processes.wait_gone(others, 5.0)
    groups = [Cgroup(rel, state.cgroup_version, state.cgroup_mounts) for rel in state.cgroups]
    for _ in range(3):
        for g in groups:
            g.kill()
        recorded = [d.proc for d in state.desktops] + [state.procs.get("scheduler")]
        processes.kill(recorded)  # a launcher killed before it joined its cgroup
        for pid in processes.netns_pids(state.namespaces):
            if pid != me:
                processes.kill([processes.ref(pid)])
        if processes.wait_gone(recorded, 5.0) and not any(g.pids() for g in groups):
            return


def down(state: GridState) -> dict:
    """Remove everything ``state`` lists that exists; returns what was removed (counts)."""
    if state.folder.is_dir() and state.ready_at is not None:
        try:
            log_event(state.events_path, "", "down")
        except OSError:
            pass
    _stop_processes(state)
    removed = {"cgroups": 0, "namespaces": 0}
    for rel in state.cgroups:  # children listed before their parent
        g = Cgroup(rel, state.cgroup_version, state.cgroup_mounts)
        existed = any(os.path.isdir(d) for d in g.dirs())
        if not g.remove(timeout_s=10.0):
            raise UserError(f"grid {state.prefix}: cgroup {rel} still holds processes "
                            f"{g.pids()}; run `fedjax-grid grid down` again")
        removed["cgroups"] += existed
    for ns in reversed(state.namespaces):
        removed["namespaces"] += network.remove_namespace(ns)
    shutil.rmtree(state.folder, ignore_errors=True)
    forget(state.prefix)
    return removed
