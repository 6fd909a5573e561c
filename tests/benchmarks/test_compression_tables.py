"""benchmarks/compression.py: the modelled time to accuracy and the tables (no runs)."""
import math

import pytest

from benchmarks import compression as B
from fedjax_grid.hazards.links import link_of


def _bytes_rows():
    rows = []
    for i, (label, up, down, mode) in enumerate(B.SETTINGS):
        f = 2 ** i
        rows.append({"setting": label, "upload": up, "broadcast": down, "mode": mode, "params": 10,
                     "up_bytes": 8_000_000 // f, "down_bytes": 8_000_000 // f, "up_x": f,
                     "down_x": f, "round_mb_10": 160 / f, "round_mb_50": 800 / f,
                     "encode_up_ms": 1.0, "decode_up_ms": 1.0, "encode_down_ms": 1.0,
                     "decode_down_ms": 1.0})
    return rows


def test_round_time_is_the_slowest_client_compute_plus_transfer():
    compute = [{0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}]
    ends = B.simulated_curve(compute, 1_000_000, 4_000_000, "home", 0)
    want = max(c + link_of("home", 0, k).download_seconds(4_000_000)
               + link_of("home", 0, k).upload_seconds(1_000_000) for k, c in compute[0].items())
    assert ends == pytest.approx([want, 2 * want])
    assert B.time_to([0.1, 0.5], ends, 0.4) == ends[1]
    assert B.time_to([0.1, 0.2], ends, 0.4) is None


def test_first_round_pays_the_full_download_of_the_delta_broadcast():
    compute = [{0: 1.0}, {0: 1.0}]
    plain = B.simulated_curve(compute, 1_000, 1_000_000, "home", 0)
    delta = B.simulated_curve(compute, 1_000, 1_000_000, "home", 0, first_down_bytes=8_000_000)
    link = link_of("home", 0, 0)
    extra = link.download_seconds(8_000_000) - link.download_seconds(1_000_000)
    assert delta[0] == pytest.approx(plain[0] + extra) and delta[1] == pytest.approx(plain[1] + extra)


def test_accuracy_rows_and_tables():
    runs = {label: {"curves": {"0": [0.1, 0.2, 0.3, 0.4]}, "sent_per_round_mb": 1.0,
                    "received_per_round_mb": 1.0} for label, *_ in B.SETTINGS}
    rows, curves = B.accuracy_rows(runs, _bytes_rows(), 0.9, compute_s=2.0)
    assert rows[0]["speedup_home"] == 1.0 and rows[0]["delta_points"] == 0.0
    speedups = [r["speedup_home"] for r in rows]
    assert speedups == sorted(speedups) and speedups[-1] > 1  # fewer bytes: sooner
    assert all(math.isclose(r["target"], 0.36) for r in rows)
    text = B.tables(_bytes_rows(), rows)
    assert text.count("\n|") >= 2 * len(B.SETTINGS) + 3 and "target accuracy: 36.00 %" in text


def test_several_seeds_are_averaged_and_compared_with_none_on_the_same_seeds():
    labels = [label for label, *_ in B.SETTINGS]
    runs = {label: {"curves": {"0": [0.1, 0.2, 0.3, 0.4]}, "sent_per_round_mb": 1.0,
                    "received_per_round_mb": 1.0} for label in labels}
    runs["none"]["curves"]["1"] = [0.1, 0.2, 0.5, 0.6]
    other = labels[-1]
    runs[other]["curves"]["1"] = [0.1, 0.2, 0.4, 0.5]
    rows, _ = B.accuracy_rows(runs, _bytes_rows(), 0.9, compute_s=2.0)
    by = {r["setting"]: r for r in rows}
    assert by[other]["seeds"] == [0, 1] and by[labels[1]]["seeds"] == [0]
    # seed 0: equal curves (0 points); seed 1: 0.2 / 3 lower on the mean of the last 3
    assert by[other]["gaps"] == pytest.approx([0.0, -100 * 0.2 / 3])
    assert by[other]["delta_points"] == pytest.approx(-100 * 0.1 / 3)
    assert by[labels[1]]["delta_points"] == 0.0          # compared with none's seed 0 only
    assert math.isclose(by[other]["target"], 0.9 * 0.5)  # none averaged over seeds 0 and 1
    assert math.isclose(by[labels[1]]["target"], 0.36)
    text = B.tables(_bytes_rows(), rows)
    assert "| 0,1 |" in text and "+0.0 / -6.7" in text


def test_runs_file_keeps_runs_and_refuses_other_rounds_or_width(tmp_path):
    path = tmp_path / "runs.json"
    assert B.read_runs_file(path, 6, 0.25) == {}          # nothing kept yet: run everything
    runs = {"none": {"curves": {"0": [0.1, 0.2]}, "compute": [{"0": 1.5}],
                     "sent_per_round_mb": 3.0, "received_per_round_mb": 4.0}}
    B.write_runs_file(path, 6, 0.25, runs)
    assert B.read_runs_file(path, 6, 0.25) == runs
    assert [p.name for p in tmp_path.iterdir()] == ["runs.json"]   # no temporary left
    with pytest.raises(ValueError, match=r"6 rounds at width 0.25, not 8 at 0.25"):
        B.read_runs_file(path, 8, 0.25)
    with pytest.raises(ValueError, match=r"not 6 at 0.5"):
        B.read_runs_file(path, 6, 0.5)
    path.write_text('{"rounds": 6, "width": 0.25, "runs": {"none": {"curves": [0.1]}}}')
    with pytest.raises(ValueError, match=r"the curves of 'none' are not a mapping"):
        B.read_runs_file(path, 6, 0.25)
    path.write_text('{"rounds": 6}')
    with pytest.raises(ValueError, match=r"is not a runs file of this benchmark") as err:
        B.read_runs_file(path, 6, 0.25)
    assert "\n" not in str(err.value)


def test_a_finished_run_is_kept_before_the_next_starts(tmp_path, monkeypatch, capsys):
    """main with --runs-file: each run is written as it finishes, so a killed benchmark keeps
    the runs it finished; a second call runs only the missing (setting, seed) pairs."""
    import pandas as pd
    calls = []
    state = {"fail_after": 1}

    def fake_accuracy_runs(rounds, width, data, work, todo, on_done=None):
        for label, seed in todo:
            if len(calls) >= state["fail_after"]:
                raise KeyboardInterrupt
            calls.append((label, seed))
            frame = pd.DataFrame({"global_accuracy": [0.1 * (1 + seed)] * rounds,
                                  "bytes_sent": [1e6] * rounds, "bytes_received": [2e6] * rounds})
            tasks = pd.DataFrame({"round": [1], "client": [0], "status": ["ok"],
                                  "duration_s": [1.0]})
            on_done(label, seed, frame, tasks)
        return {}

    monkeypatch.setattr(B, "accuracy_runs", fake_accuracy_runs)
    monkeypatch.setattr(B, "byte_rows", lambda repeats: _bytes_rows())
    monkeypatch.setattr(B, "figure", lambda *a, **k: None)
    data = tmp_path / "cifar-10-binary-sample.tar.gz"
    data.write_bytes(b"")
    monkeypatch.setenv("FEDJAX_GRID_SHARED_DATA", str(tmp_path))
    runs_file = tmp_path / "kept.json"
    args = ["--only", "none;bf16", "--seeds", "0,1", "--rounds", "4", "--compute-s", "2.0",
            "--runs-file", str(runs_file), "--out", str(tmp_path / "c.json")]
    with pytest.raises(KeyboardInterrupt):
        B.main(args)
    assert calls == [("none", 0)]
    assert B.read_runs_file(runs_file, 4, 0.25)["none"]["curves"] == {"0": [0.1] * 4}
    state["fail_after"] = 99
    assert B.main(args) == 0
    assert calls == [("none", 0), ("none", 1), ("bf16", 0), ("bf16", 1)]
    kept = B.read_runs_file(runs_file, 4, 0.25)
    assert {k: sorted(v["curves"]) for k, v in kept.items()} == {"none": ["0", "1"],
                                                                "bf16": ["0", "1"]}
    assert "| bf16 | 0,1 |" in capsys.readouterr().out
    # a runs file of other rounds: one line, exit 2, the file untouched
    before = runs_file.read_bytes()
    assert B.main([*args[:-6], "--rounds", "5", *args[-4:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not 5 at 0.25" in err
    assert runs_file.read_bytes() == before
