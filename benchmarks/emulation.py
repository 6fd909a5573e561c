"""What the emulated grid really delivers on this machine (root).

    python benchmarks/emulation.py                  # all four tables
    python benchmarks/emulation.py --only links,cpu

Prints:

1. **links**: payload throughput of one TCP stream through a desktop's shaped link,
   uplink and downlink, against the tbf setting (bytes sent: ~3 s of the link);
2. **cpu**: cores a busy loop gets in a desktop's cgroup against its CFS quota (the
   grid's cgroup given the top CPU weight meanwhile, so other load on the machine
   does not hide the quota), next to an uncapped loop in the hub's cgroup;
3. **lifecycle**: wall time of ``up`` (until every worker is registered) and ``down``
   for the home profile with 3 desktops, ``--reps`` times;
4. **memory**: a task allocating more than its desktop's memory limit -- what happens.

The machine's load average is printed with each table: the CPU figures are only as
good as the CPU that was free.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

LINK_RATES = ("1Mbit", "4Mbit", "16Mbit", "100Mbit", "1Gbit")
QUOTAS = (1.0, 0.5, 0.25, 0.15, 0.1)


def _load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def _one_desktop(memory="2GiB"):
    from fedjax_grid.emulation import EmulatedGrid, profiles
    return EmulatedGrid(profiles.from_dict({"desktops": 1, "machines": [
        {"cpu": 1.0, "memory": memory, "down": "1Gbit", "up": "1Gbit"}]}, "bench"))


def links() -> None:
    from fedjax_grid.emulation import measure, shaping
    from fedjax_grid.emulation.profiles import parse_rate
    print(f"\n1. shaped links: payload Mbit/s of one TCP stream vs the tbf rate ({_load()})")
    print(f"   {'setting':>9s} {'uplink':>9s} {'ratio':>6s} {'downlink':>9s} {'ratio':>6s}")
    with _one_desktop() as g:
        d = g.state.desktops[0]
        for text in LINK_RATES:
            rate = parse_rate(text)
            shaping.shape(d.netns, d.desktop_link, rate)
            shaping.shape(g.state.hub_ns, d.hub_link, rate)
            nbytes = int(rate / 8 * 3)
            up = measure.link_throughput(g.state, d.name, "up", nbytes)
            down = measure.link_throughput(g.state, d.name, "down", nbytes)
            print(f"   {text:>9s} {up / 1e6:9.2f} {up / rate:6.3f} {down / 1e6:9.2f} {down / rate:6.3f}")


def cpu() -> None:
    from fedjax_grid.emulation import measure
    print(f"\n2. CPU quota: cores used by a busy loop in the desktop's cgroup over 3 s ({_load()})")
    print(f"   {'quota':>6s} {'used':>6s} {'ratio':>6s} {'uncapped loop beside it':>24s}")
    with _one_desktop() as g:
        d = g.state.desktops[0]
        for q in QUOTAS:
            g.control.cgroup(d.name).set_cpu(q)
            used, free = measure.cpu_share(g.state, d.name, 3.0)
            print(f"   {q:6.2f} {used:6.3f} {used / q:6.3f} {free:24.3f}")


def lifecycle(reps: int) -> None:
    from fedjax_grid.emulation import EmulatedGrid
    print(f"\n3. grid up / down, home profile, 3 desktops ({_load()})")
    for i in range(reps):
        t0 = time.perf_counter()
        g = EmulatedGrid("home", desktops=3)
        t_up = time.perf_counter() - t0
        t0 = time.perf_counter()
        removed = g.close()
        print(f"   rep {i + 1}: up {t_up:5.1f} s (all 3 workers registered), down "
              f"{time.perf_counter() - t0:4.2f} s ({removed['namespaces']} namespaces, "
              f"{removed['cgroups']} cgroups)")


def _hog(mb: int):
    import numpy as np
    return float(np.ones(mb * 2 ** 20 // 8).sum())


def memory() -> None:
    print(f"\n4. a task allocating 900 MB on a desktop limited to 512 MiB ({_load()})")
    with _one_desktop(memory="512MiB") as g:
        c = g.client()
        try:
            addr = g.wait_for(["desk1"])["desk1"]
            t0 = time.perf_counter()
            try:
                outcome = f"returned {c.submit(_hog, 900, workers=[addr], pure=False).result(120)}"
            except Exception as e:  # noqa: BLE001 - the outcome is the measurement
                outcome = f"{type(e).__name__}"
            dt = time.perf_counter() - t0
            kills = g.control.cgroup("desk1").oom_kills()
            t0 = time.perf_counter()
            again = g.wait_for(["desk1"], 120)["desk1"]
            back = time.perf_counter() - t0
        finally:
            c.close()
    print(f"   task: {outcome} after {dt:.1f} s; kernel OOM kills in the desktop's cgroup: {kills}; "
          f"worker back under the same name {back:.1f} s later "
          f"({'new address' if again != addr else 'same address'})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="links,cpu,lifecycle,memory")
    p.add_argument("--reps", type=int, default=2)
    args = p.parse_args(argv)
    from fedjax_grid.emulation import skip_reason
    if (reason := skip_reason()) is not None:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    parts = {"links": links, "cpu": cpu, "lifecycle": lambda: lifecycle(args.reps), "memory": memory}
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    bad = [w for w in wanted if w not in parts]
    if bad:
        print(f"error: --only {bad[0]!r} is not a table; allowed: {', '.join(parts)}", file=sys.stderr)
        return 2
    for w in wanted:
        parts[w]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
