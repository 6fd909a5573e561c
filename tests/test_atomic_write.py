"""Atomic writes: the target holds the complete new content or is left as it was."""
import os

import numpy as np
import pytest

from fedjax_grid.atomic_write import atomic_path, write_atomic


def _hidden(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("fsync", [True, False])
def test_write_atomic_bytes_and_text(tmp_path, fsync):
    p = tmp_path / "a.bin"
    assert write_atomic(p, b"\x00\x01" * 1000, fsync=fsync) == p
    assert p.read_bytes() == b"\x00\x01" * 1000
    write_atomic(p, "héllo\n", fsync=fsync)  # replaces, text as UTF-8
    assert p.read_bytes() == "héllo\n".encode()
    assert _hidden(tmp_path) == []


def test_writer_raising_leaves_old_file_intact_and_no_temp(tmp_path):
    p = tmp_path / "table.csv"
    p.write_text("old\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(p) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("disk full")
    assert p.read_text() == "old\n"
    assert _hidden(tmp_path) == []


def test_writer_raising_without_old_file_creates_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "x.npz"):
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_for_writers_that_want_a_path(tmp_path):
    p = tmp_path / "arrays.npz"
    with atomic_path(p) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".arrays.npz.tmp-")
        assert not p.exists()  # nothing visible until the writer is done
        with open(tmp, "wb") as f:
            np.savez(f, a=np.arange(5))
    with np.load(p) as z:
        np.testing.assert_array_equal(z["a"], np.arange(5))
    assert _hidden(tmp_path) == []


def test_mode_before_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "key", b"k", mode=0o600)
        write_atomic(tmp_path / "pub", b"p")
    finally:
        os.umask(old)
    assert (tmp_path / "key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "pub").stat().st_mode & 0o777 == 0o644
