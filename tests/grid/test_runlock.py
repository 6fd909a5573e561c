"""The run-folder lock (filelock/fcntl): in-process refusals, no files written when refused."""
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.grid.runlock import LOCK_NAME, RunFolderBusy, RunFolderLock


def test_second_lock_on_same_folder_is_refused_until_released(tmp_path):
    a, b = RunFolderLock(tmp_path / "run"), RunFolderLock(tmp_path / "run")
    a.acquire()
    with pytest.raises(RunFolderBusy, match="in use by another run"):
        b.acquire()
    with pytest.raises(RunFolderBusy):
        b.probe()
    a.release()
    b.probe()
    b.acquire()
    assert b.held and (tmp_path / "run" / LOCK_NAME).exists()
    b.release()


def test_probe_creates_nothing(tmp_path):
    RunFolderLock(tmp_path / "new").probe()
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("sub", ["", "below"])
def test_out_that_is_or_lies_under_a_file(tmp_path, sub):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(UserError, match="is a file|which is a file"):
        RunFolderLock(f / sub if sub else f)
