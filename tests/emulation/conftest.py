"""Emulated-grid tests: their own grids folder; root tests skip with the one-line reason."""
import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def grids_dir(tmp_path_factory):
    """State files of the grids these tests make live in a temporary folder (never the
    user's ~/.fedjax_grid/grids); subprocesses inherit it."""
    d = tmp_path_factory.mktemp("grids")
    old = os.environ.get("FEDJAX_GRID_GRIDS_DIR")
    os.environ["FEDJAX_GRID_GRIDS_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("FEDJAX_GRID_GRIDS_DIR", None)
    else:
        os.environ["FEDJAX_GRID_GRIDS_DIR"] = old


def require_emulation() -> None:
    """Skip with the machine's one-line reason unless it can emulate a grid."""
    from fedjax_grid.emulation import skip_reason
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)


def leftovers(prefix: str) -> list[str]:
    """Everything with ``prefix`` that still exists: namespaces, links (root namespace),
    cgroup directories, processes whose command line names the grid."""
    from fedjax_grid.emulation import network
    out = [f"namespace {n}" for n in network.namespaces() if n.startswith(prefix)]
    out += [f"link {n}" for n in network.links() if n.startswith(prefix)]
    for top in ["/sys/fs/cgroup"] + [e.path for e in os.scandir("/sys/fs/cgroup") if e.is_dir()]:
        if os.path.isdir(os.path.join(top, prefix)):
            out.append(f"cgroup {os.path.join(top, prefix)}")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if prefix.encode() in f.read():
                    out.append(f"process {pid}")
        except OSError:
            pass
    return out
