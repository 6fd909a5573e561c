"""benchmarks/paper_table.py: the study's four presets, each over seeds."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from benchmarks import accuracy, paper_table

REPO = pathlib.Path(__file__).resolve().parents[2]


def _result(row, seed, final, tail, wall=10.0):
    return {"row": row, "seed": seed, "study": 86.21, "model": "vgg16", "width": 0.25,
            "data": "c.tar.gz", "distribution": "iid", "clients": 10, "rounds": 2, "lr": 0.01,
            "batch": 10, "final": final, "tail": tail, "wall_s": wall}


def test_over_seeds_gives_mean_sd_and_the_values_per_seed(capsys):
    results = [_result("vgg-independent", 0, 20.0, 18.0, 30.0),
               _result("vgg-balanced", 0, 10.0, 9.0),
               _result("vgg-independent", 1, 24.0, 20.0, 50.0),
               _result("vgg-independent", 2, 25.0, 22.0, 40.0)]
    ind, bal = paper_table.over_seeds(results)
    assert (ind["row"], ind["seeds"], ind["finals"]) == ("vgg-independent", [0, 1, 2],
                                                         [20.0, 24.0, 25.0])
    assert ind["final_mean"] == pytest.approx(23.0)
    assert ind["final_sd"] == pytest.approx(((9 + 1 + 4) / 2) ** 0.5)
    assert ind["tail_mean"] == pytest.approx(20.0) and ind["tail_sd"] == pytest.approx(2.0)
    assert (bal["seeds"], bal["final_sd"]) == ([0], 0.0)
    paper_table.print_table([ind, bal])
    out = capsys.readouterr().out
    assert ("| vgg-independent | vgg16 (0.25) | c.tar.gz | iid | 10 | 2 | 0.01 | 10 | 0, 1, 2 "
            "| 86.21 | 23.00 ± 2.65 | 0: 20.00 / 1: 24.00 / 2: 25.00 | 20.00 ± 2.00 | 40 |") in out


@pytest.mark.parametrize("text,seeds", [("0,1,2", [0, 1, 2]), ("3", [3]), ("0,,1", [0, 1]),
                                        ("0,0", None), ("-1", None), ("a", None), ("", None)])
def test_parse_seeds(text, seeds):
    assert paper_table.parse_seeds(text) == seeds


def test_bad_seeds_one_line_exit_2(capsys):
    assert paper_table.main(["--seeds", "1,x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seeds '1,x' is invalid" in err


@pytest.mark.slow
def test_a_tiny_row_runs_once_per_seed_and_the_seeds_differ(tmp_path):
    cifar = accuracy.shared_data_dir() / "cifar-10-binary-sample.tar.gz"
    if not cifar.exists():
        pytest.skip(f"{cifar} not present (../shared/data)")
    out = tmp_path / "paper"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "paper_table.py"),
                           "--rows", "vgg-balanced", "--rounds", "1", "--width", "0.0625",
                           "--clients", "2", "--max-test-examples", "128", "--seeds", "0,1",
                           "--out", str(out)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads((out / "results.json").read_text())
    assert [(r["row"], r["seed"], r["rounds"]) for r in runs] == [("vgg-balanced", 0, 1),
                                                                  ("vgg-balanced", 1, 1)]
    assert all(0 <= r["final"] <= 100 for r in runs)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("vgg")) == [
        "vgg-balanced-s0", "vgg-balanced-s1"]
    assert "[paper] vgg-balanced seed 1 round 1: acc" in proc.stdout  # progress names its seed
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("| vgg-balanced |"))
    assert "| 0, 1 | 85.18 |" in line
