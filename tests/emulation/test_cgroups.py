"""cgroup mechanics on real hierarchies (root): v1 where mounted, and cgroup v2's core
(procs, freezer, CPU accounting) on a cgroup2 mount, controllers or not."""
import os
import subprocess
import sys
import time

import pytest

from fedjax_grid.emulation import cgroups
from fedjax_grid.emulation.naming import new_prefix


def _busy():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _exercise(g: cgroups.Cgroup) -> None:
    g.create()
    p = _busy()
    try:
        g.add(p.pid)
        assert g.pids() == [p.pid]
        time.sleep(0.5)
        used = g.cpu_seconds()
        assert used > 0.01
        g.freeze()
        assert g.frozen()
        time.sleep(0.3)  # let the freeze settle
        c0 = g.cpu_seconds()
        time.sleep(1.0)
        assert g.cpu_seconds() - c0 < 0.01  # a frozen process gets no CPU
        g.thaw()
        assert not g.frozen()
        g.freeze()
        g.kill()  # thaws first: a frozen v1 task dies only once it runs
        assert p.wait(10) == -9
    finally:
        if p.poll() is None:
            p.kill()
    assert g.remove(timeout_s=5.0)
    assert not any(os.path.isdir(d) for d in g.dirs())


def test_cgroup_v2_core_on_a_cgroup2_mount():
    if os.geteuid() != 0:
        pytest.skip("cgroup tests need root")
    _, v2 = cgroups._mounts()
    if v2 is None:
        pytest.skip("no cgroup2 file system mounted")
    prefix = new_prefix()
    _exercise(cgroups.Cgroup(f"{prefix}/d0", "v2", v2))
    assert cgroups.Cgroup(prefix, "v2", v2).remove(timeout_s=2.0)


def test_cgroup_of_this_machine_with_limits():
    version, mounts, why = cgroups.detect()
    if os.geteuid() != 0 or version is None:
        pytest.skip(why or "cgroup tests need root")
    prefix = new_prefix()
    g = cgroups.Cgroup(f"{prefix}/d0", version, mounts)
    g.create()
    g.set_cpu(0.25)
    g.set_memory(300 * 2 ** 20)
    g.set_weight(300)
    if version == "v1":
        d = g._dir("cpu")
        assert (d / "cpu.cfs_quota_us").read_text().strip() == "25000"
        assert (d / "cpu.shares").read_text().strip() == "3072"
        assert (g._dir("memory") / "memory.limit_in_bytes").read_text().strip() == str(300 * 2 ** 20)
    else:
        assert g._dir("cpu").joinpath("cpu.max").read_text().split() == ["25000", "100000"]
    assert g.weight() == 300
    _exercise(g)
    assert cgroups.Cgroup(prefix, version, mounts).remove(timeout_s=2.0)


def test_a_process_over_the_memory_limit_is_oom_killed():
    version, mounts, why = cgroups.detect()
    if os.geteuid() != 0 or version is None:
        pytest.skip(why or "cgroup tests need root")
    prefix = new_prefix()
    g = cgroups.Cgroup(f"{prefix}/d0", version, mounts)
    g.create()
    g.set_memory(100 * 2 ** 20)
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline(); "
                          "x = bytearray(400 * 2**20); print(len(x))"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        g.add(p.pid)
        out, _ = p.communicate(b"go\n", timeout=60)
        assert p.returncode == -9 and out == b""  # killed by the kernel, never printed
        assert g.oom_kills() >= 1
    finally:
        if p.poll() is None:
            p.kill()
        g.remove(timeout_s=5.0)
        cgroups.Cgroup(prefix, version, mounts).remove(timeout_s=2.0)
