"""Every piece of ``benchmarks/run_all.py`` names a script that exists and accepts its
arguments (each script's own argument parser, stopped right after parsing), and has a title."""
import argparse
import pathlib
import runpy
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import run_all  # noqa: E402


class _Parsed(Exception):
    pass


@pytest.mark.parametrize("name", sorted(run_all.PIECES))
def test_piece_arguments_parse(name, monkeypatch):
    script, *args = run_all.PIECES[name]
    assert (REPO / script).is_file(), script
    assert run_all.TITLES.get(name), f"{name} has no title"
    original = argparse.ArgumentParser.parse_args
    seen = []

    def parse_then_stop(self, argv=None, namespace=None):
        seen.append(original(self, argv, namespace))  # exits 2 on arguments it does not take
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [script, *args])
    monkeypatch.chdir(REPO)
    with pytest.raises(_Parsed):
        runpy.run_path(str(REPO / script), run_name="__main__")
    assert seen


def test_accuracy_pieces_name_their_suite():
    for name in run_all.ACCURACY:
        assert name in run_all.SUITE_OF, name
