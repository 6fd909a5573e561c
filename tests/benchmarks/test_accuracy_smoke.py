"""Smoke test of benchmarks/accuracy.py: one tiny federated run on the real CIFAR-10 slice.

``--quick`` = VGG-16 at width 0.0625, 4 clients, 1 round, through the real engine on a
2-worker LocalCluster; the test checks the printed table and the written figure.
"""
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "accuracy.py"


@pytest.mark.slow
def test_quick_prints_table_and_writes_figure(cifar10_sample, tmp_path):
    env = dict(os.environ, FEDJAX_GRID_SHARED_DATA=str(cifar10_sample.parent))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path / "out"),
                           "--figures", str(tmp_path / "fig")],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    header = [ln for ln in lines if ln.startswith("| suite | run |")]
    assert header, proc.stdout
    rows = [ln for ln in lines if ln.startswith("| vgg | iid static | 0 | vgg16 | 0.0625 | 4 | 1 |")]
    assert len(rows) == 1, proc.stdout
    final = float(rows[0].split("|")[8])
    assert 0.0 <= final <= 100.0
    fig = tmp_path / "fig" / "vgg_time_to_accuracy.png"
    assert fig.is_file() and fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 1000 < fig.stat().st_size < 300_000
    assert (tmp_path / "out" / "vgg" / "results.json").is_file()
    # another machine (no run folders) takes the finished run from the kept record
    again = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path / "new"),
                            "--figures", str(tmp_path / "fig2"), "--resume-records",
                            str(tmp_path / "out" / "vgg" / "results.json")],
                           capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "iid static seed 0: 1 epochs taken from the record (commit " in again.stdout
    assert [ln for ln in again.stdout.splitlines() if ln.startswith(rows[0][:60])] == rows
    assert not (tmp_path / "new" / "vgg" / "s0").exists()  # nothing trained


def test_missing_slices_exit_with_message(tmp_path):
    env = dict(os.environ, FEDJAX_GRID_SHARED_DATA=str(tmp_path / "nowhere"))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--suite", "texture", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=60)
    assert proc.returncode == 2
    assert "dtd-texture-sample.zip not found" in proc.stderr
    assert proc.stderr.count("\n") == 1


@pytest.mark.slow
def test_calibration_runs_to_its_table_and_figure(cifar10_sample, tmp_path):
    """benchmarks/balanced_calibration.py end to end on the real slice (tiny VGG-16, one
    round): the runs, then the table over the seeds and the figure (a local name once
    shadowed the summary function there: every run finished, the table never came)."""
    env = dict(os.environ, FEDJAX_GRID_SHARED_DATA=str(cifar10_sample.parent))
    fig = tmp_path / "calibration.png"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "balanced_calibration.py"),
                           "--rounds", "1", "--width", "0.0625", "--readings", "stratified",
                           "--values", "0.8", "--seeds", "0", "--suite", str(tmp_path / "none"),
                           "--out", str(tmp_path / "out"), "--figure", str(fig)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| stratified | 0.8 |")]
    assert len(rows) == 1, proc.stdout
    ratio = float(rows[0].split("|")[4].split("\u00b1")[0])
    assert 0.0 < ratio < 5.0
    assert fig.is_file() and fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "results.json").is_file()
