"""A desktop's CPU share, memory limit and power switch: a cgroup (v1 or v2).

``Cgroup(rel)`` is one cgroup at the same relative path in every hierarchy it
needs: with cgroup v1 the ``cpu``, ``cpuacct``, ``memory`` and ``freezer``
controllers (wherever each is mounted, co-mounted or not); with cgroup v2 (a
``cgroup2`` file system at /sys/fs/cgroup) one directory with the ``cpu`` and
``memory`` controllers enabled and the core freezer.

* CPU share ``cores``: CFS bandwidth, ``cores * period`` of CPU time per period
  (v1 ``cpu.cfs_quota_us``, v2 ``cpu.max``); 0.5 is half of one core, 2.0 two cores.
* Memory limit in bytes (v1 ``memory.limit_in_bytes``, v2 ``memory.max``, swap
  off where the kernel accounts it): over it the kernel reclaims, then OOM-kills.
* Freeze / thaw (v1 ``freezer.state``, v2 ``cgroup.freeze``): every process of
  the desktop stops at once (a laptop's closed lid), its sockets stay open.
* CPU weight under contention (v1 ``cpu.shares``, v2 ``cpu.weight``): the grid's
  cgroup weighs as many ordinary processes as it has desktops (plus the
  scheduler), each desktop as one; a quota is a ceiling, not a reservation.
* ``cpu_seconds()``: CPU time used by its processes (v1 ``cpuacct.usage``, v2
  ``cpu.stat`` ``usage_usec``).
"""
from __future__ import annotations

import os
import pathlib
import signal
import time
from typing import Optional

#: CFS period used for every quota (microseconds).
CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "freezer")
V2_CONTROLLERS = ("cpu", "memory")


def _mounts(mountinfo: str = "/proc/self/mountinfo") -> tuple[dict, Optional[str]]:
    """(v1 controller -> mount point, the cgroup2 mount point or None)."""
    v1, v2 = {}, None
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            if len(fields) < 5 or len(rest) < 3:
                continue
            point = fields[4].replace("\\040", " ")
            if rest[0] == "cgroup2" and v2 is None:
                v2 = point
            elif rest[0] == "cgroup":
                for opt in rest[2].split(","):
                    if opt in V1_CONTROLLERS:
                        v1.setdefault(opt, point)
    return v1, v2


def detect() -> tuple[Optional[str], dict | str, str]:
    """(version 'v1'/'v2' or None, controller -> mount point (v1) or the v2 root,
    why not usable). v1 is used when all its controllers are mounted; else v2 when
    /sys/fs/cgroup is cgroup2 with cpu and memory available."""
    v1, v2 = _mounts()
    if all(c in v1 for c in V1_CONTROLLERS):
        return "v1", v1, ""
    if v2 is not None:
        try:
            available = pathlib.Path(v2, "cgroup.controllers").read_text().split()
        except OSError:
            available = []
        lacking = [c for c in V2_CONTROLLERS if c not in available]
        if not lacking and pathlib.Path(v2, "cgroup.subtree_control").exists():
            return "v2", v2, ""
        return None, {}, (f"cgroup v2 at {v2} lacks the {'/'.join(lacking) or 'subtree'} "
                          "controller(s)")
    lacking = [c for c in V1_CONTROLLERS if c not in v1]
    return None, {}, f"no cgroup v2 and cgroup v1 lacks the {'/'.join(lacking)} controller(s)"


def _write(path: pathlib.Path, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def _read(path: pathlib.Path) -> str:
    return path.read_text().strip()


class Cgroup:
    """The cgroup at relative path ``rel`` (e.g. ``fjg3a7c/d0``) in this machine's
    hierarchy: v1 (one directory per controller) or v2 (one directory)."""

    def __init__(self, rel: str, version: Optional[str] = None, mounts=None):
        if version is None:
            version, mounts, why = detect()
            if version is None:
                raise OSError(why)
        self.rel, self.version, self.mounts = rel.strip("/"), version, mounts

    def _dir(self, controller: str) -> pathlib.Path:
        root = self.mounts[controller] if self.version == "v1" else self.mounts
        return pathlib.Path(root, self.rel)

    def dirs(self) -> list[str]:
        """Every directory of this cgroup (one per distinct v1 mount; one for v2)."""
        if self.version == "v2":
            return [str(self._dir(""))]
        return sorted({str(self._dir(c)) for c in V1_CONTROLLERS})

    def create(self) -> None:
        """Make the directories (and enable cpu/memory down the v2 tree)."""
        if self.version == "v2":
            path = pathlib.Path(self.mounts)
            for part in self.rel.split("/"):
                available = _read(path / "cgroup.controllers").split()
                wanted = [f"+{c}" for c in V2_CONTROLLERS if c in available]
                if wanted:
                    _write(path / "cgroup.subtree_control", " ".join(wanted))
                path = path / part
                path.mkdir(exist_ok=True)
            return
        for d in self.dirs():
            pathlib.Path(d).mkdir(parents=True, exist_ok=True)

    def set_cpu(self, cores: Optional[float]) -> None:
        """At most ``cores`` CPUs' worth of time (None: unlimited)."""
        quota = -1 if cores is None else max(1000, int(round(cores * CPU_PERIOD_US)))
        if self.version == "v2":
            _write(self._dir("cpu") / "cpu.max",
                   f"{'max' if quota < 0 else quota} {CPU_PERIOD_US}")
            return
        _write(self._dir("cpu") / "cpu.cfs_period_us", CPU_PERIOD_US)
        _write(self._dir("cpu") / "cpu.cfs_quota_us", quota)

    def set_weight(self, weight: int) -> None:
        """CPU weight against sibling cgroups and processes under contention, in v2 units
        (1..10000, 100 = one ordinary process; v1 ``cpu.shares`` = weight * 1024 / 100)."""
        weight = min(10000, max(1, int(weight)))
        if self.version == "v2":
            _write(self._dir("cpu") / "cpu.weight", weight)
        else:
            _write(self._dir("cpu") / "cpu.shares", max(2, weight * 1024 // 100))

    def weight(self) -> int:
        if self.version == "v2":
            return int(_read(self._dir("cpu") / "cpu.weight"))
        return int(_read(self._dir("cpu") / "cpu.shares")) * 100 // 1024

    def set_memory(self, nbytes: Optional[int]) -> None:
        """Memory limit in bytes, swap not allowed where accounted (None: unlimited)."""
        d = self._dir("memory")
        if self.version == "v2":
            _write(d / "memory.max", "max" if nbytes is None else int(nbytes))
            if (d / "memory.swap.max").exists():
                _write(d / "memory.swap.max", "max" if nbytes is None else 0)
            return
        value = -1 if nbytes is None else int(nbytes)
        memsw = d / "memory.memsw.limit_in_bytes"
        if memsw.exists() and value < 0:  # raise the memory+swap limit first
            _write(memsw, value)
        _write(d / "memory.limit_in_bytes", value)
        if memsw.exists() and value >= 0:
            _write(memsw, value)

    def add(self, pid: int) -> None:
        """Move process ``pid`` (and so its future children) into this cgroup."""
        for d in self.dirs():
            _write(pathlib.Path(d) / "cgroup.procs", pid)

    def pids(self) -> list[int]:
        """Processes in this cgroup (union over its directories; [] when it is gone)."""
        out = set()
        for d in self.dirs():
            try:
                out.update(int(x) for x in _read(pathlib.Path(d) / "cgroup.procs").split())
            except (OSError, ValueError):
                pass
        return sorted(out)

    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> None:
        if self.version == "v2":
            _write(self._dir("") / "cgroup.freeze", int(frozen))
        else:
            _write(self._dir("freezer") / "freezer.state", "FROZEN" if frozen else "THAWED")

    def frozen(self) -> bool:
        """True when frozen (or freezing)."""
        try:
            if self.version == "v2":
                return _read(self._dir("") / "cgroup.freeze") == "1"
            return _read(self._dir("freezer") / "freezer.state") in ("FROZEN", "FREEZING")
        except OSError:
            return False

    def cpu_seconds(self) -> float:
        """CPU time used by the cgroup's processes so far (s)."""
        if self.version == "v2":
            for line in (self._dir("") / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
            raise OSError("cpu.stat has no usage_usec")
        return int(_read(self._dir("cpuacct") / "cpuacct.usage")) / 1e9

    def oom_kills(self) -> int:
        """Processes the kernel OOM-killed in this cgroup (0 where not reported)."""
        name = "memory.events" if self.version == "v2" else "memory.oom_control"
        try:
            for line in (self._dir("memory") / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (thawed first: a frozen v1 task dies only
        once it runs)."""
        if self.frozen():
            self.thaw()
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self, timeout_s: float = 10.0) -> bool:
        """Remove the directories (killing what is left); True when none remains."""
        end = time.monotonic() + timeout_s
        while True:
            left = [d for d in self.dirs() if os.path.isdir(d)]
            for d in left:
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            left = [d for d in left if os.path.isdir(d)]
            if not left or time.monotonic() > end:
                return not left
            self.kill()
            time.sleep(0.1)
