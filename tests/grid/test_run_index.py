"""runner.run_index: run folders found and summarised from their files; run_dirs.slug."""
import math

import pandas as pd

from fedjax_grid.experiments import get_preset
from fedjax_grid.grid import run_dirs
from fedjax_grid.grid.records import Records
from fedjax_grid.grid.runlock import RunFolderLock
from fedjax_grid.runner.run_index import finished_text, load_rounds, runs_table


def _run(folder, cfg, accuracies, profile=None):
    folder.mkdir(parents=True)
    cfg.save(folder / "config.json")
    rows = [{"round": i + 1, "global_accuracy": a, "elapsed_s": 10.0 * (i + 1)}
            for i, a in enumerate(accuracies)]
    Records(rounds=rows).save(folder)
    if profile is not None:
        pd.DataFrame(profile).to_csv(folder / "profile.csv", index=False)


def test_runs_table_summarises_every_run_under_a_folder(tmp_path):
    quick = get_preset("quickstart")
    _run(tmp_path / "quickstart" / "20260101-000000", quick, [0.5, 0.9, 0.8] + [0.95] * 5)
    _run(tmp_path / "nb" / "slow-async", quick.with_overrides(
        ["name=mine", "server.mode=async", "training.rounds=6"]), [0.4, float("nan"), 0.6],
        profile=[{"round": 1, "compile_s": 12.5}, {"round": 2, "compile_s": 0.0}])
    (tmp_path / "nb" / "dask" / "worker-1").mkdir(parents=True)          # not a run
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    table = runs_table(tmp_path)
    assert list(table["run"]) == ["nb/slow-async", "quickstart/20260101-000000"]
    assert table.attrs["skipped"] == [str(tmp_path / "broken")]
    a, q = table.iloc[0], table.iloc[1]
    assert (q["name"], q["preset"], q["mode"], q["status"], q["rounds"]) == \
        ("quickstart", "quickstart", "sync", "finished", "8/8")
    assert q["best_accuracy"] == 0.95 and q["wall_s"] == 80.0 and math.isnan(q["compile_s"])
    assert (a["preset"], a["mode"], a["status"], a["rounds"]) == ("", "async", "stopped", "3/6")
    assert a["best_accuracy"] == 0.6 and a["final_accuracy"] == 0.6 and a["compile_s"] == 12.5
    lock = RunFolderLock(tmp_path / "nb" / "slow-async")
    lock.acquire()
    try:
        assert runs_table(tmp_path).iloc[0]["status"] == "running"
    finally:
        lock.release()
    rounds = load_rounds(table["path"], labels=table["run"])
    assert list(pd.unique(rounds["run"])) == ["nb/slow-async", "quickstart/20260101-000000"]


def test_finished_text_says_what_the_run_reached():
    cfg = get_preset("quickstart")
    rounds = pd.DataFrame({"round": range(1, 9), "global_accuracy": [0.5] * 7 + [0.92]})
    text = finished_text(cfg, rounds, "runs/q")
    assert text.startswith("quickstart is finished: 8/8 rounds, final global accuracy 92.0 % "
                           "(best 92.0 %); nothing to resume in runs/q")
    assert "--set training.rounds=18" in text


def test_run_folder_names_have_no_spaces_or_commas(tmp_path):
    assert run_dirs.slug("slow, no deadline") == "slow-no-deadline"
    assert run_dirs.slug("home link, quant(3) both ways") == "home-link-quant-3-both-ways"
    assert run_dirs.slug(" , ") == "run"
    path = run_dirs.new_run_dir("my run, v2", tmp_path)
    assert path.parent.name == "my-run-v2" and " " not in str(path.relative_to(tmp_path))


def test_a_run_whose_last_evaluation_was_stopped_is_not_finished(tmp_path):
    cfg = get_preset("quickstart").with_overrides(["training.rounds=2"])
    folder = tmp_path / "cut"
    folder.mkdir()
    cfg.save(folder / "config.json")
    Records(rounds=[{"round": 1, "global_accuracy": 0.9, "elapsed_s": 10.0, "evaluation": "done"},
                    {"round": 2, "elapsed_s": 20.0, "evaluation": "stopped"}]).save(folder)
    row = runs_table(tmp_path).iloc[0]
    assert (row["status"], row["rounds"], row["final_accuracy"]) == ("stopped", "2/2", 0.9)
    rec = Records.load(folder)
    rec.update_round(2, global_accuracy=0.95, evaluation="on resume")
    rec.save(folder)
    assert runs_table(tmp_path).iloc[0]["status"] == "finished"
