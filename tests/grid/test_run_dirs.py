"""Per-run output folders and the ``latest`` pointer (symbolic link or pointer file)."""
import time

import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.grid import run_dirs


def test_new_folder_per_run_and_latest(tmp_path):
    now = time.mktime((2026, 11, 29, 14, 30, 5, 0, 0, -1))
    a = run_dirs.new_run_dir("exp", tmp_path, now=now)
    assert a == tmp_path / "exp" / "20261129-143005" and not a.exists()
    run_dirs.claim(a)
    b = run_dirs.new_run_dir("exp", tmp_path, now=now)  # same second: a suffix
    assert b.name == "20261129-143005-2"
    run_dirs.claim(b)
    with pytest.raises(UserError, match="appeared"):
        run_dirs.claim(b)
    assert run_dirs.latest_run_dir("exp", tmp_path) is None
    link = run_dirs.point_latest(a)
    assert link.is_symlink() and run_dirs.latest_run_dir("exp", tmp_path) == tmp_path / "exp" / a.name
    run_dirs.point_latest(b)  # replaced atomically
    assert run_dirs.latest_run_dir("exp", tmp_path).name == b.name
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [a.name, b.name, "latest"]


def test_pointer_file_where_symlinks_are_not_allowed(tmp_path, monkeypatch):
    import pathlib

    def no_symlinks(self, *a, **k):
        raise OSError("symbolic links are not allowed here")
    monkeypatch.setattr(pathlib.Path, "symlink_to", no_symlinks)
    a = run_dirs.claim(run_dirs.new_run_dir("exp", tmp_path))
    link = run_dirs.point_latest(a)
    assert link.is_file() and not link.is_symlink() and link.read_text().strip() == a.name
    assert run_dirs.latest_run_dir("exp", tmp_path) == a
