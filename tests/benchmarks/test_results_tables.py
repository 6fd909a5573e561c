"""The accuracy suite's summaries, seeds, plateau rule and the assembling of docs/RESULTS.md.

Pure functions of ``benchmarks/accuracy.py``, ``accuracy_report.py`` and ``run_all.py`` on
hand-made round tables and records (the suites' real runs take hours).
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
report = _load("accuracy_report")
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


def _row(suite, run, tail, final=None, rounds=10, clients=10, seed=0):
    return {"suite": suite, "run": run, "seed": seed, "model": "vgg16", "width": 0.25,
            "clients": clients, "rounds": rounds, "final_acc": tail if final is None else final,
            "tail_acc": tail, "best_acc": tail + 0.02, "wall_s": 60.0, "t90_s": 30.0, "r90": 5}


def test_targets_average_per_seed_ratios_and_state_the_spread():
    rows = [_row("vgg", "iid static", 0.45, final=0.40), _row("vgg", "centralized", 0.50, clients=1),
            _row("vgg", "iid static", 0.40, seed=1), _row("vgg", "centralized", 0.50, seed=1),
            _row("vgg", "balanced(0.8) static", 0.30), _row("vgg", "balanced(0.8) static", 0.5, seed=1),
            _row("mob", "iid static", 0.01), _row("mob", "centralized", 0.02, clients=1)]
    got = {t: (ok, detail) for t, ok, detail in accuracy.check_targets(rows)}
    key = "vgg: federated iid >= 0.9 x centralized (mean of last 3 rounds, equal epochs; mean over seeds)"
    ok, detail = got[key]
    # seed 0: 0.9, seed 1: 0.8 -> mean 0.85 < 0.9, although seed 0 alone passes
    assert not ok and "ratio 0.850 ± 0.071 (seeds 0/1: 0.900 / 0.800)" in detail
    ok, detail = got["vgg: balanced(0.8) static below iid (mean of last 3 rounds; mean over seeds)"]
    # seed 0: 0.667, seed 1: 1.25 -> mean 0.958 < 1: passes on the mean
    assert ok and "0.667 / 1.250" in detail
    assert got["mob: federated iid >= 0.9 x centralized (mean of last 3 rounds, equal epochs; "
               "mean over seeds)"][0] is False
    assert len(got) == 3
    table = accuracy.markdown_table(rows[:2])
    assert "| vgg | iid static | 0 | vgg16 | 0.25 | 10 | 10 | 40.00 | 45.00 | 47.00 | 60 | 30 (5) |" \
        in table


def test_plateau_epoch_rule():
    rising = [0.1 + 0.02 * i for i in range(30)]
    assert accuracy.plateau_epoch(rising) is None
    # flat from epoch 10 on: the best 3-epoch mean stops rising at epoch 12; 5 epochs later
    flat = [0.05 * i for i in range(1, 11)] + [0.5] * 20
    assert accuracy.plateau_epoch(flat) == 17
    assert accuracy.plateau_epoch(flat, min_epochs=25) == 25
    # noise below 0.5 points does not count as progress, a 1-point step does
    noisy = [0.5 + 0.004 * (i % 2) for i in range(12)]
    assert accuracy.plateau_epoch(noisy) == 8
    # rising by 1 point per epoch until epoch 11, then flat: not before the rise stops
    step = [0.4] * 3 + [0.41 + 0.01 * i for i in range(8)] + [0.48] * 10
    assert accuracy.plateau_epoch(step) == 17
    assert accuracy.plateau_epoch([0.5] * 7) is None  # too short to tell


def test_expand_seeds_puts_centralized_first_then_each_run_over_the_seeds():
    specs = [_spec("vgg", "iid static"), _spec("vgg", "dirichlet"), _spec("vgg", "centralized", True)]
    got = accuracy.expand_seeds(specs, [0, 2])
    assert [(s.name, s.seed, s.cfg.seed) for s in got] == [
        ("centralized", 0, 0), ("centralized", 2, 2), ("iid static", 0, 0), ("iid static", 2, 2),
        ("dirichlet", 0, 0), ("dirichlet", 2, 2)]
    assert got[3].run_dir(pathlib.Path("o")) == pathlib.Path("o/vgg/s2") / got[3].cfg.name / "federated"


def _suite(tmp_path, suite="vgg", seeds=(0, 1, 2), epochs=6):
    """A results.json as accuracy.py writes it: iid, dirichlet and centralized per seed."""
    rows, curves = [], {}
    for seed in seeds:
        for run, level, clients in (("iid static", 0.40 + 0.02 * seed, 10),
                                    ("dirichlet(0.5) static", 0.30, 10), ("centralized", 0.50, 1)):
            acc = [level * (i + 1) / epochs for i in range(epochs)]
            curves[f"{run}|{seed}"] = {"round": list(range(1, epochs + 1)), "global_accuracy": acc,
                                       "local_loss": [2.0 - 0.1 * i for i in range(epochs)],
                                       "elapsed_s": [10.0 * (i + 1) for i in range(epochs)]}
            tail = sum(acc[-3:]) / 3
            rows.append(_row(suite, run, tail, final=acc[-1], rounds=epochs, clients=clients,
                             seed=seed))
    data = {"suite": suite, "seeds": list(seeds), "epochs": epochs, "rows": rows,
            "curves": curves, "plateau": {"rule": "best 3-epoch mean ...", "min_epochs": 4,
                                          "max_epochs": 9, "at": {"0": 5, "1": 6, "2": None}}}
    (tmp_path / "accuracy" / suite).mkdir(parents=True)
    (tmp_path / "accuracy" / suite / "results.json").write_text(json.dumps(data))
    return data


def test_report_tables_and_targets_over_seeds(tmp_path):
    data = _suite(tmp_path)
    table = report.runs_table(data)
    # iid tails: seed s: (0.4+0.02s) * (4+5+6)/18 -> 33.33, 35.00, 36.67
    assert "| iid static | 10 | 0, 1, 2 | 6 | 35.00 ± 1.67 | 0: 33.33 / 1: 35.00 / 2: 36.67 |" in table
    got = {t: (ok, d) for t, ok, d in report.targets(data)}
    ok, detail = got["vgg: federated iid static >= 0.9 x centralized (equal epochs)"]
    assert not ok and detail.startswith("ratio 0.840 ± 0.040 (per seed 0: 0.800 / 1: 0.840 / 2: 0.880)")
    assert got["vgg: dirichlet(0.5) static below iid static"][0] is True
    assert report.ratio_by_epoch(data, "iid static", "centralized").endswith("6: 0.84 ± 0.04")
    text = report.plateau_text(data)
    assert "seed 2: not within 9" in text and "Not every seed plateaued" in text


def _meta(tmp_path, name, command, commit="abc1234567", rc=0):
    (tmp_path / f"{name}.out").write_text(f"output of {name} in {tmp_path}/x.csv\n")
    (tmp_path / f"{name}.json").write_text(json.dumps(
        {"piece": name, "command": command, "commit": commit, "started": "t0", "finished": "t1",
         "wall_s": 7200.0, "wall_s_earlier": 600.0, "returncode": rc,
         "machine": {"cpu": "cpu", "cores": 2}, "out": str(tmp_path)}))


def test_assemble_from_records_only_with_provenance_and_no_absolute_paths(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    _suite(out)
    _meta(out, "accuracy-vgg", "python benchmarks/accuracy.py --suite vgg --seeds 0,1,2")
    _meta(out, "throughput", "python benchmarks/throughput.py", commit="abc1234567+dirty")
    _meta(out, "data_reads", "python benchmarks/data_reads.py", rc=None)
    _meta(out, "fragments", "python benchmarks/fragments.py")
    monkeypatch.setattr(run_all, "RECORDS", out)
    monkeypatch.setattr(run_all, "RESULTS", tmp_path / "docs" / "RESULTS.md")
    text = run_all.assemble()
    assert str(tmp_path) not in text and "/tmp/" not in text and "+dirty" not in text
    assert "Commit: abc1234567; seeds: 0, 1, 2; wall time 7800 s (2.17 h, of which 600 s in " \
           "earlier interrupted attempts)" in text
    assert "- FAIL (on the mean over seeds): vgg: federated iid static >= 0.9 x centralized" in text
    assert "| VGG-16, CIFAR-10, independent | 50 nodes, lr 0.01, batch 10, 90 epochs | 86.21 % " \
           "| iid static: vgg16 width 0.25, 10 clients, 6 epochs, the data slice | 35.00 ± 1.67 " in text
    # a dirty or unfinished record is not shown, only its command
    throughput = text.split("## Train-step throughput")[1].split("## ")[0]
    assert "not made from a clean commit" in throughput and "output of" not in throughput
    assert "still running or interrupted" in text.split("## Random-access reads")[1].split("## ")[0]
    fragments = text.split("## Texture fragments")[1].split("## ")[0]
    assert "output of fragments in benchmarks/out/x.csv" in fragments
    for fig in ("vgg_curves.png", "vgg_study_shape.png"):
        assert f"](results/{fig})" in text
        assert (tmp_path / "docs" / "results" / fig).read_bytes()[:4] == b"\x89PNG"
    assert "Not in this assembly (not run). Reproduce: `python benchmarks/accuracy.py --suite " \
           "mobilenet" in text


def test_a_piece_keeps_only_its_small_records_and_the_page_reads_them(tmp_path, monkeypatch):
    out, records = tmp_path / "out", tmp_path / "records"
    _suite(out)
    _meta(out, "accuracy-vgg", "python benchmarks/accuracy.py --suite vgg --seeds 0,1,2")
    ckpt = out / "accuracy" / "vgg" / "iid static-s0" / "checkpoint.msgpack"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x" * 1000)
    (records / "accuracy-vgg.out").parent.mkdir(parents=True)
    (records / "accuracy-vgg.out").write_text("an older record\n")
    monkeypatch.setattr(run_all, "OUT", out)
    monkeypatch.setattr(run_all, "RECORDS", records)
    monkeypatch.setattr(run_all, "RESULTS", tmp_path / "docs" / "RESULTS.md")
    kept = run_all.keep_records("accuracy-vgg")
    assert sorted(kept) == ["accuracy-vgg.json", "accuracy-vgg.out", "accuracy/vgg/results.json"]
    files = sorted(str(f.relative_to(records)) for f in records.rglob("*") if f.is_file())
    assert files == sorted(kept)  # no checkpoint, no half-written .part file
    assert (records / "accuracy-vgg.out").read_text().startswith("output of accuracy-vgg")
    import shutil
    shutil.rmtree(out)  # the machine that ran it is gone: the page comes from the records
    text = run_all.assemble()
    assert "| VGG-16, CIFAR-10, independent |" in text and "35.00 ± 1.67" in text


def test_refresh_replaces_only_the_named_pieces_blocks_and_keeps_the_hand_text(tmp_path,
                                                                            monkeypatch):
    records = tmp_path / "records"
    records.mkdir()
    _meta(records, "fragments", "python benchmarks/fragments.py", commit="fedcba9876")
    _meta(records, "data_reads", "python benchmarks/data_reads.py")
    _meta(records, "throughput", "python benchmarks/throughput.py", commit="abc1234567+dirty")
    monkeypatch.setattr(run_all, "RECORDS", records)
    block = ["Command: `python benchmarks/fragments.py`  ", "Commit: 0000000; old provenance",
             "", "```", "old output", "```", "", "![old figure](results/old.png)"]
    reads = ["Command: `python benchmarks/data_reads.py --batches 50`  ", "Commit: 1111111", "",
             "```", "old reads", "```"]
    throughput = ["Command: `python benchmarks/throughput.py --steps 5`  ", "```", "kept", "```"]
    page = "\n".join(["# Results", "", "Hand text above.", "", *block, "", "Hand analysis below.",
                      "", *reads, "", *reads, "", *throughput, "", "## Next", "end"])
    text, said = run_all.refresh(page, ["fragments", "data_reads", "throughput", "cpu-bound"])
    lines = text.split("\n")
    assert lines[:4] == ["# Results", "", "Hand text above.", ""]
    assert lines[4] == "Command: `python benchmarks/fragments.py`  "
    assert lines[5].startswith("Commit: fedcba9876; ")
    assert lines[6:9] == ["", "```", "output of fragments in benchmarks/out/x.csv"]
    assert "old output" not in text and "old figure" not in text
    assert "Hand analysis below." in lines and lines[-2:] == ["## Next", "end"]
    assert text.count("old reads") == 2  # two blocks with that command: not touched
    assert "kept" in lines  # a record from a modified tree is not shown
    assert said[0].startswith("fragments: lines 5-12 replaced from its records")
    assert said[1] == ("data_reads: left as it is: 2 blocks start with "
                       "'Command: `python benchmarks/data_reads.py --batches 50`'")
    assert said[2].startswith("throughput: left as it is: Not in this assembly (")
    assert said[3].startswith("cpu-bound: left as it is: Not in this assembly (not run)")


def test_refresh_refuses_a_modified_tree_but_not_hand_edits_of_the_page(tmp_path, monkeypatch):
    page = tmp_path / "RESULTS.md"
    page.write_text("hand text\n")
    monkeypatch.setattr(run_all, "RESULTS", page)
    monkeypatch.setattr(run_all, "RECORDS", tmp_path)
    asked = []

    def git_state(repo=None, ignore=()):
        asked.append(ignore)
        return "abc1234", dirty
    monkeypatch.setattr(run_all, "git_state", git_state)
    dirty = True
    assert run_all.main(["--refresh", "--only", "fragments"]) == 2
    assert page.read_text() == "hand text\n"
    assert set(asked[-1]) == {"docs/RESULTS.md", "docs/results"}  # the page may hold hand edits
    dirty = False
    assert run_all.main(["--refresh", "--only", "fragments"]) == 0
    assert page.read_text() == "hand text\n"  # no block of that piece: nothing replaced


def test_running_allows_new_records_but_not_changed_code(tmp_path):
    repo = tmp_path / "repo"
    (repo / "benchmarks" / "records").mkdir(parents=True)
    (repo / "benchmarks" / "tool.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qm", "x"], check=True)
    assert run_all.git_state(repo)[1] is False
    (repo / "benchmarks" / "records" / "throughput.out").write_text("new record\n")
    (repo / "docs" / "results").mkdir(parents=True)
    (repo / "docs" / "results" / "async_vs_sync_digits.png").write_bytes(b"png")  # a piece's figure
    assert run_all.git_state(repo, ignore=run_all.PIECE_OUTPUTS)[1] is False
    assert run_all.git_state(repo)[1] is True  # assembling wants the records committed too
    (repo / "benchmarks" / "tool.py").write_text("x = 2\n")
    assert run_all.git_state(repo, ignore=run_all.PIECE_OUTPUTS)[1] is True


def test_relative_paths():
    here = str(run_all.REPO)
    assert run_all.relative(f"see {here}/docs/x.png and /root/.cache/a/b.bin") == \
        "see ./docs/x.png and …/b.bin"


def test_assembling_refuses_a_modified_tree(tmp_path):
    import shutil
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "benchmarks", repo / "benchmarks", ignore=shutil.ignore_patterns("out"))
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qm", "x"], check=True)
    (repo / "benchmarks" / "accuracy.py").write_text("# changed\n")
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "run_all.py"), "--assemble"],
                          capture_output=True, text=True, timeout=120, cwd=repo)
    assert proc.returncode == 2 and proc.stderr.startswith("error: refusing to assemble")
    assert proc.stderr.count("\n") == 1


@pytest.mark.slow
def test_bad_override_exits_2_with_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / accuracy.SLICES["texture"]).write_bytes(b"")  # only the existence check runs first
    env = {**__import__("os").environ, "FEDJAX_GRID_SHARED_DATA": str(data)}
    for args, word in ((["--set", "training.lr=-1"], "lr"), (["--seeds", "0,x"], "--seeds"),
                       (["--seeds", "1,1"], "--seeds"), (["--max-rounds", "9"], "--max-rounds")):
        proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "accuracy.py"), "--suite",
                               "texture", *args, "--out", str(tmp_path / "out")],
                              capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and word in proc.stderr
        assert proc.stderr.count("\n") == 1


def test_calibration_bad_seeds_exit_2_with_one_line(tmp_path):
    for bad in ("0,zero", "1,1", "-1"):
        proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "balanced_calibration.py"),
                               "--seeds", bad, "--out", str(tmp_path / "out")],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and "--seeds" in proc.stderr
        assert proc.stderr.count("\n") == 1


def test_first_epochs_joins_a_long_seed_with_short_ones(tmp_path):
    long = _suite(tmp_path, suite="mobilenet", seeds=(0,), epochs=12)
    short = _suite(tmp_path, suite="mobilenet-10e", seeds=(1, 2), epochs=10)
    data = report.first_epochs([long, short], 10, "mobilenet-10e")
    assert data["seeds"] == [0, 1, 2]
    iid = sorted((r for r in data["rows"] if r["run"] == "iid static"), key=lambda r: r["seed"])
    assert [r["rounds"] for r in iid] == [10, 10, 10]
    # seed 0 cut at epoch 10 of 12: the mean of epochs 8-10 of 0.4 * e / 12
    assert iid[0]["tail_acc"] == pytest.approx(0.4 * 9 / 12)
    assert iid[0]["wall_s"] == pytest.approx(100.0)
    assert report.first_epochs([long], 13, "x") is None


def test_async_vs_sync_figures_skip_a_round_whose_evaluation_the_budget_cut():
    """The last round of a budget-stopped run may have no accuracy (its evaluation was
    stopped): the accuracy at the budget and the final accuracy are of evaluated rounds."""
    import math

    import pandas as pd

    from benchmarks.async_vs_sync import summary
    rounds = pd.DataFrame({"global_accuracy": [0.5, 0.92, 0.95, float("nan")],
                           "elapsed_s": [10.0, 40.0, 95.0, 101.0]})
    s = summary("sync", rounds, target=0.9, budget_s=100.0)
    assert s["time_to_target_s"] == 40.0
    assert s["final_acc"] == 0.95 and s["acc_at_budget"] == 0.95
    assert s["wall_s"] == 101.0 and s["server_updates"] == 4
    none = summary("sync", rounds.assign(global_accuracy=float("nan")), 0.9, 100.0)
    assert math.isnan(none["final_acc"]) and math.isnan(none["time_to_target_s"])


def test_curves_leave_out_text_columns():
    data = {"curves": {"iid static|0": {"round": [1, 2], "global_accuracy": [0.1, None],
                                        "evaluation": ["done", "done"]}}}
    curves = report.curves_of(data)
    assert set(curves[("iid static", 0)]) == {"round", "global_accuracy"}
    assert math.isnan(curves[("iid static", 0)]["global_accuracy"][1])


@pytest.mark.parametrize("command,seeds", [
    ("python b.py --seeds 0,1,2", "0, 1, 2"),
    ("python b.py --seeds=0,1,2 --rounds 3", "0, 1, 2"),
    ("python b.py --claims codec --seeds 0 1 2 --target 0.9", "0, 1, 2"),  # nargs
    ("python b.py --seeds 1,2 --tag=-10e", "1, 2"),
    ("python b.py --steps 5", "n/a (no random seeds in this piece)"),
    ("python benchmarks/client_algorithms.py --seeds 4 --rows-file r.json", "4")])
def test_provenance_names_every_seed_of_the_command(command, seeds):
    assert run_all._seeds_of(command) == seeds


def test_seeds_a_command_does_not_name_are_the_ones_its_output_printed(tmp_path, monkeypatch):
    out = "# first attempt, seeds [0]\n...\n# client algorithms, Dirichlet(0.1), 10 clients, " \
          "seeds [0, 1, 2], total wall 2081 s\n"
    assert run_all._seeds_of("python benchmarks/client_algorithms.py --rows-file r.json", out) \
        == "0, 1, 2 (the script's default, as its output names them)"
    assert run_all._seeds_of("python b.py --seeds 4", out) == "4"  # the command's come first
    monkeypatch.setattr(run_all, "RECORDS", tmp_path)
    _meta(tmp_path, "client-algorithms", "python benchmarks/client_algorithms.py")
    (tmp_path / "client-algorithms.out").write_text(out)
    meta = json.loads((tmp_path / "client-algorithms.json").read_text())
    assert "; seeds: 0, 1, 2 (the script's default, as its output names them); " \
        in run_all.provenance(meta)


def _record(path, specs_tables):
    """results.json as accuracy.py writes it, for (spec, table) pairs."""
    rows = [accuracy.summarize(s, t, float(t["elapsed_s"].iloc[-1])) for s, t in specs_tables]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"suite": specs_tables[0][0].suite, "rows": rows,
                                "curves": {s.key: t.to_dict("list") for s, t in specs_tables}},
                               default=float))
    return path


def test_from_record_takes_only_the_same_experiment_with_enough_epochs(tmp_path):
    spec = accuracy.with_rounds(_spec("mobilenet-10e", "iid static"), 4)
    path = _record(tmp_path / "r.json", [(spec, _table([0.1, 0.2, 0.3, 0.4, 0.5]))])
    prior = accuracy.load_record(path)
    got = accuracy.from_record(prior, spec)
    assert list(got["global_accuracy"]) == [0.1, 0.2, 0.3, 0.4]  # cut to the spec's 4 epochs
    assert accuracy.from_record(prior, accuracy.with_rounds(spec, 6)) is None  # too few epochs
    other = accuracy.dataclasses.replace(spec, cfg=spec.cfg.with_overrides(["training.lr=0.5"]))
    assert accuracy.from_record(prior, other) is None  # another experiment, same name
    assert accuracy.from_record(prior, accuracy.dataclasses.replace(spec, suite="vgg")) is None
    assert accuracy.from_record(prior, accuracy.dataclasses.replace(spec, seed=1)) is None
    row = json.loads(path.read_text())["rows"][0]
    assert row["fingerprint"] == accuracy.experiment_id(spec.cfg)
    assert row["commit"] == accuracy.head_commit() != "unknown"  # this checkout's HEAD
    moved = accuracy.dataclasses.replace(spec, cfg=spec.cfg.with_overrides(
        [f"data.path={tmp_path / 'cifar-10-binary-sample.tar.gz'}", f"data.data_dir={tmp_path}"]))
    elsewhere = accuracy.dataclasses.replace(moved, cfg=moved.cfg.with_overrides(
        [f"data.path={tmp_path / 'x' / 'cifar-10-binary-sample.tar.gz'}", "data.data_dir=null"]))
    assert accuracy.experiment_id(moved.cfg) == accuracy.experiment_id(elsewhere.cfg)
    assert moved.cfg.fingerprint() != elsewhere.cfg.fingerprint()
    # rows without a fingerprint (records written before it) are never taken
    data = json.loads(path.read_text())
    data["rows"][0].pop("fingerprint")
    path.write_text(json.dumps(data))
    assert accuracy.load_record(path) == {}
    assert accuracy.load_record(tmp_path / "absent.json") == {}
    path.write_text("{not json")
    with pytest.raises(accuracy.UserError, match="is not an accuracy suite's results.json"):
        accuracy.load_record(path)


def test_a_plateaued_centralized_curve_in_the_record_is_not_run_again(tmp_path):
    """The plateau phase takes a recorded curve that reached its plateau (no data, no
    training here: running it would fail on the missing data set)."""
    central = _spec("mobilenet", "centralized", centralized=True)
    curve = [0.1, 0.2, 0.3, 0.35, 0.4, 0.41, 0.41, 0.41, 0.41, 0.41, 0.41, 0.41, 0.41]
    prior = accuracy.load_record(_record(tmp_path / "r.json", [(central, _table(curve))]))
    said = []
    epochs, at = accuracy.plateau_epochs([central], tmp_path / "out", (4, 40), said.append,
                                         prior=prior)
    assert at == {0: accuracy.plateau_epoch(curve, 4)} and epochs == at[0]
    assert "from the record" in said[0]
    assert not (tmp_path / "out").exists()


def test_accuracy_cli_refuses_a_broken_record_with_one_line(tmp_path, cifar10_sample):
    bad = tmp_path / "results.json"
    bad.write_text("[1, 2]")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "accuracy.py"), "--suite",
                           "vgg", "--resume-records", str(bad), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**__import__("os").environ,
                               "FEDJAX_GRID_SHARED_DATA": str(cifar10_sample.parent)})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert str(bad) in proc.stderr and "is not an accuracy suite's results.json" in proc.stderr


@pytest.mark.slow  # suite budget (benchmark tooling, ~10 s)
def test_long_pieces_resume_from_their_committed_record_on_another_machine(tmp_path, monkeypatch):
    """A long suite's command names its record; run_piece on a fresh machine (no output
    folder) adds the kept partial record's wall time and keeps its printed output."""
    shown = run_all.shown_command("accuracy-mobilenet-seeds")
    assert shown.endswith("--resume-records benchmarks/records/accuracy/mobilenet-10e/results.json")
    out, records = tmp_path / "out", tmp_path / "records"
    records.mkdir()
    monkeypatch.setattr(run_all, "OUT", out)
    monkeypatch.setattr(run_all, "RECORDS", records)
    monkeypatch.setitem(run_all.PIECES, "accuracy-mobilenet-seeds",
                        ["-c", "import sys; print('args', sys.argv[1:])", "{records}/x"])
    _meta(records, "accuracy-mobilenet-seeds", run_all.shown_command("accuracy-mobilenet-seeds"),
          rc=None)
    assert run_all.run_piece("accuracy-mobilenet-seeds", [], nice=False) == 0
    meta = json.loads((records / "accuracy-mobilenet-seeds.json").read_text())
    assert meta["wall_s_earlier"] == 7800.0 and meta["returncode"] == 0
    printed = (records / "accuracy-mobilenet-seeds.out").read_text()
    assert printed.startswith("output of accuracy-mobilenet-seeds")  # the earlier attempt's
    assert f"args ['{records}/x']" in printed


def test_refresh_replaces_a_hand_run_section_without_a_block_of_its_command(tmp_path,
                                                                           monkeypatch):
    """A section with a hand run (or a block of an older command) is replaced whole under
    its title; a '## ' line inside a code fence is not the next section."""
    records = tmp_path / "records"
    records.mkdir()
    _meta(records, "fragments", "python benchmarks/fragments.py", commit="fedcba9876")
    monkeypatch.setattr(run_all, "RECORDS", records)
    page = "\n".join(["# Results", "", f"## {run_all.TITLES['fragments']}", "",
                      "Reproduce: `python benchmarks/fragments.py --old`", "hand numbers 1.23x",
                      "```", "## a printed line, not a heading", "```", "",
                      "### A hand subsection", "more hand numbers", "",
                      f"## {run_all.TITLES['cpu-bound']}", "kept"])
    text, said = run_all.refresh(page, ["fragments"])
    assert said == ["fragments: section lines 4-13 replaced from its records (no block of "
                    "its command)"]
    assert "hand numbers" not in text and "printed line" not in text and "--old" not in text
    lines = text.split("\n")
    at = lines.index(f"## {run_all.TITLES['fragments']}")
    assert lines[at + 1:at + 3] == ["", "Command: `python benchmarks/fragments.py`  "]
    assert lines[-2:] == [f"## {run_all.TITLES['cpu-bound']}", "kept"]
    again, said = run_all.refresh(text, ["fragments"])  # now found by its block
    assert again == text and said[0].startswith("fragments: lines ")


def test_dasks_heartbeat_error_at_shutdown_is_cut_from_a_records_output():
    lines = ["  async: {'policy': 'async'}",
             "2026-12-04 09:28:29,134 - distributed.worker - ERROR - Failed to communicate with "
             "scheduler during heartbeat.",
             "Traceback (most recent call last):", '  File "…/tcp.py", line 226, in read',
             "    frames = await stream.read_bytes(fmt_size)", "                ^^^^^^",
             "tornado.iostream.StreamClosedError: Stream is closed", "",
             "The above exception was the direct cause of the following exception:", "",
             "Traceback (most recent call last):", '  File "…/worker.py", line 1165, in heartbeat',
             "distributed.comm.core.CommClosedError: in <TCP (closed)>: Stream is closed",
             "  figure: …/async_vs_sync_digits.png", "| sync | 1 |"]
    got = run_all.cut_shutdown_noise(lines)
    assert got == ["  async: {'policy': 'async'}",
                   "[2026-12-04 09:28:29: Dask: a worker's heartbeat met the closed scheduler "
                   "while the cluster closed; its traceback (11 lines) cut]",
                   "  figure: …/async_vs_sync_digits.png", "| sync | 1 |"]
    other = ["2026-12-04 09:28:29,134 - distributed.worker - ERROR - Worker stream died", "x"]
    assert run_all.cut_shutdown_noise(other) == other  # any other error stays


def test_provenance_says_when_a_kept_piece_did_not_finish():
    meta = {"command": "python benchmarks/accuracy.py --seeds 0,1", "commit": "abc1234567",
            "started": "2026-12-04T15:37:54", "wall_s": 2180.6, "wall_s_earlier": 8571.3,
            "machine": {}}
    kept = run_all.provenance(meta)
    assert "started 2026-12-04T15:37:54, not finished (kept when interrupted) on: " in kept
    assert "wall time 10752 s (2.99 h, of which 8571 s in earlier interrupted attempts)" in kept
    assert "seeds: 0, 1;" in kept and "Commit: abc1234567;" in kept
    done = run_all.provenance({**meta, "finished": "2026-12-04T18:00:00", "wall_s_earlier": 0})
    assert "ran 2026-12-04T15:37:54 to 2026-12-04T18:00:00 on: " in done
    assert "not finished" not in done and "earlier" not in done


def test_a_resumed_pieces_section_shows_its_last_summary_not_its_progress(tmp_path,
                                                                          monkeypatch):
    """codecs' output is every run's round lines, over several attempts (a resumed run
    appends), then a summary: the section shows the last attempt's summary alone."""
    _meta(tmp_path, "codecs", run_all.shown_command("codecs"))
    head = run_all.SUMMARY_FROM["codecs"]
    (tmp_path / "codecs.out").write_text("\n".join([
        "  [none, seed 0] round 1: acc 15.04 %, 19.4 s", f"{head} 1.0; 6 rounds; 12 s in all",
        "| none | first attempt |", "  [none, seed 1] round 1: acc 16.00 %, 20.0 s",
        "  [none, seed 1] 150 s", "", f"{head} 1.0; 6 rounds; 3236 s in all", "",
        "| setting | up MB |", "| none | 58.95 |", "target accuracy: 33.30 %"]) + "\n")
    monkeypatch.setattr(run_all, "RECORDS", tmp_path)
    text = run_all.piece_section("codecs")
    body = text[text.index("```\n") + 4:text.rindex("\n```")].split("\n")
    assert body == [f"{head} 1.0; 6 rounds; 3236 s in all", "", "| setting | up MB |",
                    "| none | 58.95 |", "target accuracy: 33.30 %"]


@pytest.mark.parametrize("name", sorted(run_all.SUMMARY_FROM))
def test_each_summary_marker_is_in_its_pieces_committed_output(name):
    """SUMMARY_FROM names a line the piece prints: its committed record has it (a changed
    print would otherwise show the whole progress again, silently)."""
    out = run_all.REPO / "benchmarks" / "records" / f"{name}.out"
    assert any(ln.startswith(run_all.SUMMARY_FROM[name])
               for ln in out.read_text().splitlines()), out


def test_a_lent_devices_records_become_the_last_section_with_paired_differences(tmp_path,
                                                                                monkeypatch):
    records = tmp_path / "records"
    dev = records / "gpu-h200"
    dev.mkdir(parents=True)
    (dev / "README.md").write_text(
        "# bf16 on a GPU\n\nWritten by `benchmarks/gpu_check.sh` at commit abc1234.\n\n"
        "| file | command |\n|---|---|\n| `acc.out` | `bash benchmarks/gpu_check.sh accuracy` |\n"
        "| `gone.out` | lost |\n")
    (dev / "acc.out").write_text(
        "/tmp/site/distributed/node.py:195: UserWarning: Port 8787 is already in use.\n"
        "Perhaps you already have a cluster running?\nHosting the HTTP server on port 39881 instead\n"
        "  warnings.warn(\n"
        "seed 0 f32: 10.0 20.0 30.0 40.0 (5 s)\n"
        "seed 0 bf16: 10.0 21.0 31.0 41.5 (5 s)\n"
        "seed 1 f32: 10.0 20.0 30.0 40.0 (6 s)\n"
        "seed 1 bf16: 10.0 19.0 29.0 39.5 (6 s)\n"
        "seed 2 bf16: 10.0 19.0 29.0 99.0 (6 s)\n")  # no f32 run of seed 2: not paired
    monkeypatch.setattr(run_all, "RECORDS", records)
    monkeypatch.setattr(run_all, "RESULTS", tmp_path / "docs" / "RESULTS.md")
    text = run_all.assemble()
    section = text.split("## bf16 on a GPU: one NVIDIA H200")[1]
    assert "Written by `benchmarks/gpu_check.sh` at commit abc1234." in section
    assert "# bf16 on a GPU" not in section  # the README's title gives way to the section's
    assert "UserWarning" not in section and "Hosting the HTTP" not in section
    assert "seed 0 bf16: 10.0 21.0 31.0 41.5 (5 s)" in section
    assert "`gone.out`: missing from the records." in section
    # final: +1.5 / -0.5 -> +0.50 ± 1.41; last 3: (+1.0+1.0+1.5)/3 = 1.1667, -0.8333 -> +0.17
    assert "(seeds 0, 1, run in both precisions" in section
    assert "| bf16 - f32 (paired) | +0.50 +- 1.41 | +1.5, -0.5 |" in section  # final round
    assert "| bf16 - f32 (paired) | +0.17 +- 1.41 | +1.2, -0.8 |" in section  # last 3
    assert "| f32 | 40.00 +- 0.00 | 40.0, 40.0 |" in section
    assert "One GPU, for 15 minutes" in text and "No GPU machine was lent" not in text


def test_paired_tables_read_kept_runs_lines_and_the_control_arm():
    """A kept run's line (``(0 s, rounds 1-4 kept from ...)``) counts; the control arm's
    f32-stock - f32 tables follow the bf16 ones, over the seeds that have it."""
    text = ("seed 3 f32: 10.0 20.0 30.0 40.0 (0 s, rounds 1-4 kept from cifar10-f32-s3)\n"
            "seed 3 bf16: 10.0 20.0 30.0 41.0 (5 s)\n"
            "seed 3 f32-stock: 10.0 20.0 30.0 38.0 (9 s)\n"
            "seed 0 f32: 10.0 20.0 30.0 50.0 (5 s)\nseed 0 bf16: 10.0 20.0 30.0 47.0 (5 s)\n")
    table = run_all.paired_precision_table(text)
    assert "(seeds 0, 3, run in both precisions" in table
    assert "| bf16 - f32 (paired) | -1.00 +- 2.83 | -3.0, +1.0 |" in table     # final round
    control = table[table.index("(seeds 3):"):]
    assert "| f32-stock - f32 (paired) | -2.00 +- 0.00 | -2.0 |" in control
    assert run_all.paired_precision_table("seed 0 f32: 10.0 (1 s)\n") == ""


def test_without_a_devices_readme_its_section_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(run_all, "RECORDS", tmp_path / "records")
    assert run_all.device_section("gpu-h200") == \
        "Not in this assembly (no `benchmarks/records/gpu-h200/README.md`).\n"


def test_calibration_names_the_reading_closest_to_the_study_and_those_within_one_sd():
    def setting(reading, value, ratio, sd):
        return {"reading": reading, "value": value, "ratio": ratio, "ratio_sd": sd,
                "per_seed": {"0": ratio - sd, "1": ratio, "2": ratio + sd},
                "acc_per_seed": {"0": 0.3, "1": 0.3, "2": 0.3}}
    data = {"study_ratio": 0.988, "settings": [
        setting("iid", None, 1.0, 0.0), setting("balanced", 0.8, 0.31, 0.02),
        setting("stratified", 0.8, 0.970, 0.01), setting("stratified", 0.9, 0.981, 0.002),
        setting("dirichlet", 0.5, 0.988, 0.1)]}  # not a 0.8-0.9 skew reading: left out
    text = report.calibration_table(data)
    assert ("Closest to the study's 0.988 (on the mean over 3 seeds): **stratified(0.9)**, "
            "0.981 ± 0.002 (-0.007). The study's ratio lies within one sd of the mean of: "
            "none.") in text
    data["settings"][2]["ratio_sd"] = 0.02  # |0.970 - 0.988| = 0.018 <= 0.02
    assert "within one sd of the mean of: stratified(0.8)." in report.calibration_table(data)
    assert report.calibration_verdict({"settings": data["settings"][:1]}) == []


def test_a_suite_stopped_in_its_plateau_phase_keeps_the_centralized_runs_it_finished(
        tmp_path, monkeypatch):
    """The centralized runs go to their plateau first; each is written to results.json as
    it ends, so a suite stopped before the federated runs (a machine that goes) keeps them
    for the next attempt's --resume-records."""
    curve = [0.1, 0.2, 0.3, 0.35, 0.4, 0.41, 0.41, 0.41, 0.41, 0.41, 0.41, 0.41, 0.41]

    def fake_central(spec, run_dir, log, stop=None):
        if spec.seed == 1:
            raise KeyboardInterrupt  # the machine goes during seed 1's run
        accs = []
        for a in curve:
            accs.append(a)
            if stop(accs):
                break
        return _table(accs)
    monkeypatch.setattr(accuracy, "run_centralized", fake_central)
    central = _spec("vgg", "centralized", centralized=True)
    with pytest.raises(KeyboardInterrupt):
        accuracy.run_suite("vgg", [central], tmp_path / "out", tmp_path / "figs", {},
                           log=lambda m: None, seeds=(0, 1), plateau=(4, 40))
    prior = accuracy.load_record(tmp_path / "out" / "vgg" / "results.json")
    assert list(prior) == ["centralized|0"]
    kept = prior["centralized|0"][1]["global_accuracy"].tolist()
    assert kept == curve[:len(kept)] and accuracy.plateau_epoch(kept, 4) is not None
    said = []  # the next attempt takes seed 0 from the record and trains seed 1 only
    monkeypatch.setattr(accuracy, "run_centralized",
                        lambda spec, *a, **k: said.append(spec.seed) or _table(curve))
    accuracy.plateau_epochs(accuracy.expand_seeds([central], [0, 1]), tmp_path / "out2",
                            (4, 40), log=lambda m: None, prior=prior)
    assert said == [1]


def test_refresh_of_a_block_without_fenced_output_stops_at_its_figure(tmp_path, monkeypatch):
    """The calibration's block is provenance, tables and a figure (no output in fences):
    refreshing it keeps the hand text after its figure and the next section, fenced
    output included."""
    records = tmp_path / "records"
    (records / "calibration").mkdir(parents=True)
    _meta(records, "calibration",
          "python benchmarks/balanced_calibration.py --seeds 0,1,2 --readings balanced,stratified")
    setting = {"reading": "stratified", "value": 0.9, "ratio": 0.98, "ratio_sd": 0.05,
               "per_seed": {"0": 0.95, "1": 1.0, "2": 0.99}, "acc": 0.38, "acc_sd": 0.01,
               "acc_per_seed": {"0": 0.37, "1": 0.38, "2": 0.39}}
    (records / "calibration" / "results.json").write_text(json.dumps(
        {"settings": [setting], "rows": [], "rounds": 8, "width": 0.25, "seeds": [0, 1, 2]}))
    monkeypatch.setattr(run_all, "RECORDS", records)
    monkeypatch.setattr(run_all, "RESULTS", tmp_path / "docs" / "RESULTS.md")
    title = "## " + run_all.TITLES["calibration"]
    old = ["Command: `" + run_all.shown_command("calibration") + "`  ", "Commit: 0000000", "",
           "| reading | old |", "|---|---|", "| stratified | 0.5 |", "",
           "![balanced calibration](results/balanced_calibration.png)"]
    nxt = ["## The study's table at CPU scale", "", "Command: `python benchmarks/paper_table.py`  ",
           "", "```", "| paper | table |", "```", "", "Paper reading."]
    hand = ["Calibration reading.", "", "![a hand-made figure](results/hand.png)"]
    page = "\n".join([title, "", *old, "", *hand, "", *nxt])
    text, said = run_all.refresh(page, ["calibration"])
    assert said == ["calibration: lines 3-10 replaced from its records"]
    assert "| stratified | 0.5 |" not in text and "Commit: abc1234567; " in text
    assert text.endswith("\n".join(["", *hand, "", *nxt]))
    # the table is its own block: a blank line between the sentence above it and the table
    assert "same seed.\n\n| reading | parameter |" in text
    assert text.count("![balanced calibration]") == 1


def test_targets_at_a_glance_gathers_each_sections_verdicts_and_names_the_missing():
    sections = [("Accuracy: A", "Command: x\n\n- PASS (on the mean over seeds): a: ratio 0.96 ± "
                 "0.03 (per seed 0: 0.93 / 1: 0.99 / 2: 0.96)\n- FAIL (on the mean over seeds): "
                 "b: ratio 0.65\n"),
                ("Accuracy: B", "Not in this assembly (not run). Reproduce: `y`\n"),
                ("Calibration", "Command: z\n\nClosest to the study's 0.988 (on the mean over 3 "
                 "seeds): **s(0.9)**\n"),
                ("Throughput", "Command: t\n\n```\n- PASS in an output, not a verdict\n```\n")]
    text = run_all.targets_at_a_glance(sections)
    assert text.startswith("## Targets at a glance\n")
    assert "- **PASS** (Accuracy: A): a: ratio 0.96 ± 0.03 (per seed 0: 0.93 / 1: 0.99 / 2: " \
           "0.96)\n- **FAIL** (Accuracy: A): b: ratio 0.65\n" in text
    assert "- (Calibration): Closest to the study's 0.988 (on the mean over 3 seeds): " \
           "**s(0.9)**\n" in text
    assert "in an output" not in text
    assert text.rstrip().endswith("Not in this assembly (no accepted record yet): Accuracy: B.")


def test_full_scale_estimate_reads_the_throughput_record(tmp_path):
    """The study table's compute estimate uses the images/s of the throughput piece's record
    (fast path rows of vgg16 and mobilenet_v3_large), not a constant; no record, no estimate."""
    (tmp_path / "throughput.out").write_text(
        "| model | input | classes | path | images/s | s/step |\n|---|---|---|---|---|---|\n"
        "| vgg16 | 32x32 | 10 | fast | 40.0 | 0.8 |\n| vgg16 | 32x32 | 10 | stock | 9.9 | 3.2 |\n"
        "| mobilenet_v3_small | 64x64 | 200 | fast | 306.9 | 0.1 |\n"
        "| mobilenet_v3_large | 64x64 | 200 | fast | 80.0 | 0.4 |\n")
    rates = run_all.measured_rates(tmp_path)
    assert rates == {"vgg": 40.0, "mobilenet": 80.0}
    grid_h, here_h = run_all.full_scale_hours("vgg-independent", rates)
    # 90 epochs x (50,000 / 50 nodes / 40 img/s + 10,000 / 120 img/s)
    assert grid_h == pytest.approx(90 * (1000 / 40 + 10_000 / 120) / 3600)
    assert here_h == pytest.approx(90 * (50_000 / 40 + 10_000 / 120) / 3600)
    assert "40.0 img/s" in run_all.rates_text(rates)
    assert run_all.measured_rates(tmp_path / "none") == {}
    assert run_all.rates_text({}).startswith("no throughput record")


def test_scope_notes_name_pieces_that_exist_and_sections_of_the_page():
    """Each accuracy piece's note on its seeds and epochs belongs to a piece and names
    sections by their titles."""
    import re as _re
    for name, text in run_all.SCOPE.items():
        assert name in run_all.ACCURACY
        for title in _re.findall(r'"([^"]+)"', text):
            assert title in run_all.TITLES.values(), title
