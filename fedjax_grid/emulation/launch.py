"""``python -m fedjax_grid.emulation.launch --netns NS [--cgroup DIR ...] -- ARGV...``

Enter network namespace NS, join each cgroup directory (write our PID to its
``cgroup.procs``), then exec ARGV: the program and every child it starts run
inside the desktop's namespace and cgroups from the start.
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="fedjax_grid.emulation.launch")
    p.add_argument("--netns", required=True)
    p.add_argument("--cgroup", action="append", default=[])
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given after --")
    from pyroute2 import netns
    netns.setns(args.netns, flags=0)
    for d in args.cgroup:
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
