"""benchmarks/vs_flower.py: the peer benchmark against Flower (an optional extra).

With Flower installed (``pip install -e ".[compare]"``), the slow tests run ``--check``
(every client's round-1 update through Flower's simulation engine equals fedjax_grid's
``client_update`` to 0.0) and a tiny measurement (4 clients, 1 rep, 2 rounds). Without
it they skip, and the script exits 2 with one line saying how to install it.
"""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "vs_flower.py"


def run_script(*args, timeout):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=timeout)


@pytest.mark.slow
def test_check_flower_updates_equal_client_update():
    pytest.importorskip("flwr")
    proc = run_script("--check", "--clients", "4", timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert [int(r.split("|")[1]) for r in rows] == [0, 1, 2, 3]
    for r in rows:
        assert [float(c) for c in r.split("|")[2:4]] == [0.0, 0.0], r
    assert "max abs difference: 0.0 (equal)" in proc.stdout


@pytest.mark.slow
def test_tiny_run_prints_both_toolkits(tmp_path):
    pytest.importorskip("flwr")
    out = tmp_path / "runs.json"
    proc = run_script("--clients", "4", "--reps", "1", "--rounds", "2", "--warmup-rounds", "0",
                      "--json", str(out), timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 8 and cells[0] == "4":
            rows[cells[1]] = cells
    assert set(rows) == {"fedjax_grid", "flower", "ideal"}, proc.stdout
    ideal = rows.pop("ideal")  # the floor: a steady round only
    assert ideal[3] == ideal[5] == ideal[6] == "-" and float(ideal[4].split()[0]) > 0, ideal
    floor = [ln for ln in proc.stdout.splitlines() if ln.startswith("| 4 | ")
             and len(ln.strip("|").split("|")) == 5]
    assert len(floor) == 1, proc.stdout
    for cells in rows.values():  # "median (min-max)" cells
        assert cells[2] == "1"
        wall, steady, rss, acc, load = (float(c.split()[0]) for c in cells[3:8])
        assert wall > 0 and steady > 0 and rss > 0 and load >= 0, cells
        assert 0.0 <= acc <= 100.0
    assert "environment at start:" in proc.stdout and "load average" in proc.stdout
    assert any(line.startswith("| 4 | ") and ("(met)" in line or "(missed)" in line)
               for line in proc.stdout.splitlines()), proc.stdout
    data = json.loads(out.read_text())
    assert {r["toolkit"] for r in data["runs"]} == {"fedjax_grid", "flower", "ideal"}
    assert all(r["rc"] == 0 for r in data["runs"])
    assert all(len(r["round_s"]) == 2 for r in data["runs"] if r["toolkit"] != "ideal")
    for r in (r for r in data["runs"] if r["toolkit"] == "ideal"):
        assert len(r["process_round_s"]) == 2 and len(set(r["cores"])) == 2
        assert r["steady_s"] == pytest.approx(sum(r["process_round_s"]) / 4)


@pytest.mark.skipif(importlib.util.find_spec("flwr") is not None, reason="Flower is installed")
def test_without_flower_one_line_and_exit_2():
    proc = run_script("--clients", "4", "--reps", "1", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "Flower is not installed: pip install -e '.[compare]'\n"


def test_a_variant_names_its_overrides_and_a_bad_one_is_one_line_exit_2():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import vs_flower
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert vs_flower.parse_variant("idle=grid.xla_threads=2, grid.pin_workers=false") == (
        "fedjax_grid[idle]", ("grid.xla_threads=2", "grid.pin_workers=false"))
    for bad in ("idle", "=grid.xla_threads=2", "idle=grid.xla_threads"):
        with pytest.raises(ValueError):
            vs_flower.parse_variant(bad)
    proc = run_script("--variant", "idle", "--clients", "4", timeout=120)
    assert proc.returncode == 2
    assert "--variant idle is invalid: NAME=KEY=VALUE[,KEY=VALUE...] is required" in proc.stderr


def _import_vs_flower():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import vs_flower
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return vs_flower


def test_floor_table_states_the_lowest_ratio_the_work_allows(capsys):
    """The ideal round (2 pinned processes, no coordination) against Flower's steady round,
    and the engine's against the ideal, from the paired runs."""
    vs_flower = _import_vs_flower()
    nan = float("nan")

    def run(toolkit, rep, steady, wall=30.0, rss=1000.0, acc=0.98):
        return {"toolkit": toolkit, "clients": 4, "run": f"rep{rep}", "steady_s": steady,
                "wall_s": wall, "peak_rss_mb": rss, "final_accuracy": acc, "load_start": 0.5}
    runs = []
    for rep, (mine, flower, ideal) in enumerate([(2.0, 2.4, 2.0), (2.2, 2.5, 2.1),
                                                 (2.1, 2.6, 1.9)], start=1):
        runs += [run("fedjax_grid", rep, mine), run("flower", rep, flower),
                 run("ideal", rep, ideal, wall=nan, rss=nan, acc=nan)]
    toolkits = ["fedjax_grid", "flower", "ideal"]
    vs_flower.print_tables(vs_flower.summarize(runs, toolkits, [4]), 8)
    out = capsys.readouterr().out
    assert "| 4 | ideal | 3 | - | 2.00 (1.90-2.10) | - | - | 0.5 (0.5-0.5) |" in out
    # the goal table compares the toolkits only
    assert [ln for ln in out.splitlines() if ln.startswith("| 4 | ") and "(goal" not in ln
            and ("met)" in ln or "missed)" in ln)] == [
        "| 4 | 0.84, runs 0.81-0.88 (missed) | 1.00, runs 1.00-1.00 (missed) "
        "| 1.00, runs 1.00-1.00 (missed) |"]
    # ideal / Flower: 2.0 / 2.5 = 0.80, paired 2.0/2.4, 2.1/2.5, 1.9/2.6
    assert "| 4 | 2.00 (1.90-2.10) | 2.50 (2.40-2.60) | 0.80, runs 0.73-0.84 " \
           "| 1.05, runs 1.00-1.11 |" in out
