"""The accuracy suite's summaries, targets and the generated findings of docs/RESULTS.md.

Pure functions of ``benchmarks/accuracy.py`` and ``benchmarks/run_all.py`` on
hand-made round tables (the suite's real runs take tens of minutes).
"""
import importlib.util
import json
import math
import pathlib
import subprocess
import sys

import pandas as pd
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


accuracy = _load("accuracy")
run_all = _load("run_all")


def _spec(suite, name, centralized=False):
    from fedjax_grid.experiments import ExperimentConfig
    cfg = ExperimentConfig().with_overrides(["model.name=vgg16", "model.kwargs={width: 0.25}",
                                             "partition.num_clients=10"])
    return accuracy.Spec(suite, name, cfg, centralized=centralized)


def _table(accs, round_s=2.0):
    return pd.DataFrame({"round": range(1, len(accs) + 1), "global_accuracy": accs,
                         "elapsed_s": [round_s * (i + 1) for i in range(len(accs))]})


def test_summarize_final_tail_best_and_time_to_90_percent():
    row = accuracy.summarize(_spec("vgg", "iid static"),
                             _table([0.1, 0.3, 0.5, 0.46, 0.4, 0.52]), wall_s=13.0)
    assert row["final_acc"] == pytest.approx(0.52)
    assert row["tail_acc"] == pytest.approx((0.46 + 0.4 + 0.52) / 3)
    assert row["best_acc"] == pytest.approx(0.52)
    # 90 % of the final 0.52 is 0.468: first reached by 0.5 in round 3 at 6 s
    assert (row["r90"], row["t90_s"]) == (3, 6.0)
    assert (row["model"], row["width"], row["clients"], row["rounds"]) == ("vgg16", 0.25, 10, 6)
    assert accuracy.summarize(_spec("vgg", "centralized", True), _table([0.2]), 1.0)["clients"] == 1


def test_summarize_skips_rounds_without_evaluation():
    row = accuracy.summarize(_spec("vgg", "iid static"),
                             _table([0.2, math.nan, 0.4, math.nan]), wall_s=1.0)
    assert row["final_acc"] == pytest.approx(0.4)
    assert row["tail_acc"] == pytest.approx(0.3)


def _row(suite, run, tail, final=None, rounds=10, clients=10):
    return {"suite": suite, "run": run, "model": "vgg16", "width": 0.25, "clients": clients,
            "rounds": rounds, "final_acc": tail if final is None else final, "tail_acc": tail,
            "best_acc": tail + 0.02, "wall_s": 60.0, "t90_s": 30.0, "r90": 5}


def test_targets_compare_tail_means_and_report_pass_and_fail():
    rows = [_row("vgg", "iid static", 0.45, final=0.40), _row("vgg", "centralized", 0.50, clients=1),
            _row("vgg", "balanced(0.8) static", 0.30), _row("vgg", "dirichlet(0.5) static", 0.46),
            _row("mob", "iid static", 0.01), _row("mob", "centralized", 0.02, clients=1)]
    got = {t: (ok, detail) for t, ok, detail in accuracy.check_targets(rows)}
    ok, detail = got["vgg: federated iid >= 0.9 x centralized (mean of last 3 rounds, equal epochs)"]
    assert ok and "ratio 0.900" in detail and "last round 40.00 %" in detail
    assert got["vgg: balanced(0.8) static below iid (mean of last 3 rounds)"][0] is True
    assert got["vgg: dirichlet(0.5) static below iid (mean of last 3 rounds)"][0] is False
    assert got["mob: federated iid >= 0.9 x centralized (mean of last 3 rounds, equal epochs)"][0] \
        is False
    assert len(got) == 4
    table = accuracy.markdown_table(rows[:2])
    assert "| vgg | iid static | vgg16 | 0.25 | 10 | 10 | 40.00 | 45.00 | 47.00 | 60 | 30 (5) |" in table


def test_findings_are_generated_from_the_recorded_runs():
    fed = [0.1 * i for i in range(1, 9)] + [0.8, 0.8]
    cen = [0.5] * 10
    rows = {("vgg", "iid static"): _row("vgg", "iid static", 0.8),
            ("vgg", "centralized"): _row("vgg", "centralized", 0.5, clients=1),
            ("vgg", "balanced(0.8) static"): _row("vgg", "balanced(0.8) static", 0.2),
            ("vgg-forming", "iid dynamic"): _row("vgg-forming", "iid dynamic", 0.3),
            ("vgg-forming", "iid static"): _row("vgg-forming", "iid static", 0.35)}
    curves = {("vgg", "iid static"): fed, ("vgg", "centralized"): cen}
    text = run_all.findings(rows, curves)
    assert "federated iid vs centralized** (vgg16 width 0.25, 10 clients, 10 epochs): " \
           "80.0 % vs 50.0 %" in text and "ratio 1.60" in text
    # 3-round means at epochs 2, 4, ..., 10: (0.1+0.2)/2 / 0.5 = 0.30, (0.2+0.3+0.4)/3/0.5 = 0.60
    assert "2: 0.30, 4: 0.60" in text and "10: 1.60" in text
    assert "balanced(0.8) static 20.0 % against iid 80.0 %" in text
    assert "static 35.0 %, dynamic 30.0 %" in text  # forming sorted best first
    assert "MobileNet" not in text


def test_assemble_reads_results_json_of_a_suite(tmp_path, monkeypatch):
    out = tmp_path / "out"
    (out / "accuracy" / "vgg").mkdir(parents=True)
    rows = [_row("vgg", "iid static", 0.45), _row("vgg", "centralized", 0.5, clients=1)]
    curves = {"iid static": {"global_accuracy": [0.2] * 8}, "centralized": {"global_accuracy": [0.5] * 8}}
    (out / "accuracy" / "vgg" / "results.json").write_text(json.dumps({"rows": rows, "curves": curves}))
    monkeypatch.setattr(run_all, "OUT", out)
    text = run_all.assemble()
    assert "| VGG-16, CIFAR-10, independent | 86.21 % | 45.00 % (45.00 %) (vgg16 width 0.25" in text
    assert "ratio 0.90" in text
    assert "Not run in this assembly. Reproduce: `python benchmarks/accuracy.py --suite mobilenet`" \
        in text


def test_bad_override_exits_2_with_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / accuracy.SLICES["texture"]).write_bytes(b"")  # only the existence check runs first
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "accuracy.py"), "--suite",
                           "texture", "--set", "training.lr=-1", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**__import__("os").environ, "FEDJAX_GRID_SHARED_DATA": str(data)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "lr" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_assemble_lists_curves_of_dashed_suites_and_client_variants(tmp_path, monkeypatch):
    out = tmp_path / "out"
    (out / "accuracy" / "mobilenet-2clients").mkdir(parents=True)
    row = dict(_row("mobilenet-2clients", "iid static", 0.03, clients=2), model="mobilenet_v3_small")
    (out / "accuracy" / "mobilenet-2clients" / "results.json").write_text(
        json.dumps({"rows": [row], "curves": {"iid static": {"global_accuracy": [0.01, 0.03]}}}))
    (out / "accuracy-mobilenet-2clients.out").write_text(
        "[mobilenet-2clients] iid static: final 3.00 % best 5.00 % in 9 s; per round: 1.0 3.0\n"
        "| suite | run |\n")
    (out / "accuracy-mobilenet-2clients.json").write_text(json.dumps(
        {"command": "python benchmarks/accuracy.py --suite mobilenet", "started": "t0",
         "finished": "t1", "wall_s": 9.0, "returncode": 0, "machine": {}}))
    monkeypatch.setattr(run_all, "OUT", out)
    text = run_all.assemble()
    assert "iid static (2 clients) 3.0 % (best 5.0 %)" in text
    assert "Federated over 2 clients" not in text  # no centralized run to compare with
    assert "```\n[mobilenet-2clients] iid static: final 3.00 %" in text


def test_findings_compare_a_client_count_variant_with_centralized():
    rows = {("mobilenet", "centralized"): _row("mobilenet", "centralized", 0.03, clients=1),
            ("mobilenet-2clients", "iid static"): _row("mobilenet-2clients", "iid static", 0.033,
                                                       clients=2, rounds=3)}
    curves = {("mobilenet", "centralized"): [0.01, 0.02, 0.03, 0.04, 0.05],
              ("mobilenet", "iid static"): [0.005, 0.01, 0.015, 0.02, 0.025]}
    text = run_all.findings(rows, curves)
    assert "centralized 3.0 % (best 5.0 %), iid static (2 clients) 3.3 %" in text
    # compared at the same epochs (1-3), not with centralized's later epochs
    assert ("Federated over 2 clients (mobilenet-2clients, 3 epochs): 3.3 % = 1.65x centralized "
            "at epochs 1-3 (2.0 %); 10 clients at the same epochs: 1.0 %.") in text
