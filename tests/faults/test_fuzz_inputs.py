"""Property tests (hypothesis) over the config schema and the CLI: every generated input
either builds a valid config -- whose counts, sizes and durations a run can satisfy -- or
is refused with one line (exit code 2 from the CLI), quickly, with no traceback; names
never lead outside the runs folder."""
from __future__ import annotations

import pathlib

from hypothesis import given, settings
from hypothesis import strategies as st

from fedjax_grid.errors import UserError
from fedjax_grid.experiments import ExperimentConfig
from fedjax_grid.grid import run_dirs

#: Text with what breaks paths: separators, dots, NUL and other control characters.
PATHISH = st.text(st.sampled_from(list("ab.-_ /\\\x00\n\x1b\u202e~é")) | st.characters(),
                  max_size=40)


def _one_line(e: UserError) -> None:
    text = str(e)
    assert text and "\n" not in text and len(text) < 700, text


@settings(max_examples=300)
@given(name=PATHISH)
def test_a_name_is_refused_or_stays_inside_the_runs_folder(name, tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "runs-root"
    try:
        cfg = ExperimentConfig.from_dict({"name": name})
    except UserError as e:
        _one_line(e)
        assert e.path == "name"
        return
    path = run_dirs.new_run_dir(cfg.name, root)
    assert path.resolve().parent.parent == root.resolve(), (name, path)
    assert (pathlib.Path("runs") / cfg.name).resolve().parent == pathlib.Path("runs").resolve()


@settings(max_examples=200)
@given(path=PATHISH)
def test_a_path_is_refused_in_one_line_or_kept_as_given(path):
    try:
        cfg = ExperimentConfig.from_dict({"out_dir": path, "data": {"data_dir": path}})
    except UserError as e:
        _one_line(e)
        assert e.path in ("out_dir", "data.data_dir")
        return
    assert cfg.out_dir == path and "\x00" not in path and path.strip()
