"""benchmarks/client_algorithms.py --rows-file: each finished run kept as it ends; a re-run
runs only the (suite, algorithm, seed, rounds) not kept (the runs replaced by a stand-in)."""
import json

import pytest

from benchmarks import client_algorithms as B


@pytest.fixture
def fake_runs(monkeypatch):
    """Replace the engine run and the cluster; record which runs were made; the third run
    raises KeyboardInterrupt while ``state['stop']`` is set (a benchmark killed mid-way)."""
    calls, state = [], {"stop": True}

    def run_one(cfg, grid, out):
        if state["stop"] and len(calls) == 2:
            raise KeyboardInterrupt
        calls.append((out, cfg.seed))
        acc = 0.5 + 0.01 * cfg.seed
        return {"tail_acc": acc, "final_acc": acc, "curve": [acc] * cfg.training.rounds,
                "wall_s": 1.0}

    class Grid:
        def close(self):
            pass

    monkeypatch.setattr(B, "run_one", run_one)
    monkeypatch.setattr("fedjax_grid.grid.cluster.open_cluster", lambda *a, **k: Grid())
    return calls, state


def test_rows_are_kept_as_runs_end_and_a_rerun_runs_only_the_missing(fake_runs, tmp_path,
                                                                     capsys):
    calls, state = fake_runs
    rows_file = tmp_path / "rows.json"
    args = ["--suites", "digits", "--algorithms", "fedavg,scaffold", "--seeds", "0,1",
            "--rounds", "2", "--rows-file", str(rows_file)]
    with pytest.raises(KeyboardInterrupt):
        B.main(args)
    kept = json.loads(rows_file.read_text())
    assert [(r["algorithm"], r["seed"]) for r in kept] == [("fedavg", 0), ("scaffold", 0)]
    state["stop"] = False
    assert B.main(args) == 0
    assert len(calls) == 4                                    # 2 before the kill, 2 after
    rows = json.loads(rows_file.read_text())
    assert sorted((r["algorithm"], r["seed"]) for r in rows) == [
        ("fedavg", 0), ("fedavg", 1), ("scaffold", 0), ("scaffold", 1)]
    out = capsys.readouterr().out
    assert "digits fedavg seed 0: kept" in out and "| digits | scaffold | 2 |" in out
    # other rounds are other runs: nothing kept is taken for them
    assert B.main([*args[:-4], "--rounds", "3", *args[-2:]]) == 0
    assert len(calls) == 8
    assert len(json.loads(rows_file.read_text())) == 8         # the 2-round rows stay


def test_a_rows_file_that_is_not_one_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "rows.json"
    path.write_text('[{"suite": "digits"}]')
    assert B.main(["--rows-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a rows file of this benchmark" in err
    assert path.read_text() == '[{"suite": "digits"}]'
