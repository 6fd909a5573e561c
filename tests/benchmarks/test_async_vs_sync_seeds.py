"""benchmarks/async_vs_sync.py over seeds: per-seed rows, then mean ± sd per policy."""
import math

from benchmarks import async_vs_sync


def _row(policy, seed, t, ratio, acc=0.9):
    return {"policy": policy, "seed": seed, "server_updates": 5, "client_updates_folded": 20,
            "tasks": 24, "time_to_target_s": t, "time_vs_sync": ratio, "acc_at_budget": acc,
            "final_acc": acc, "wall_s": 100.0}


def test_one_seed_prints_its_rows_only():
    text = async_vs_sync.markdown("digits", [_row("sync", 1, 30.0, 1.0)])
    assert "| sync | 1 | 5 | 20 | 24 | 30.0 | 1.00x | 90.00 | 90.00 |" in text
    assert "mean ± sd" not in text


def test_seeds_give_mean_sd_and_per_seed_ratios_and_count_a_missed_target():
    rows = [_row("sync", 1, 30.0, 1.0), _row("async", 1, 15.0, 0.5, 0.95),
            _row("sync", 2, 40.0, 1.0), _row("async", 2, 24.0, 0.6, 0.93),
            _row("sync", 3, 20.0, 1.0), _row("async", 3, math.nan, math.nan, 0.85)]
    text = async_vs_sync.markdown("digits", rows)
    assert "| async | 3 | 5 | 20 | 24 | missed | - | 85.00 | 85.00 |" in text
    assert ("| async | 1, 2, 3 | 19.5 ± 6.4 (1 missed) | 0.55 ± 0.07 (1 missed) "
            "(1: 0.50 / 2: 0.60 / 3: missed) | 91.00 ± 5.29 |") in text
    assert "| sync | 1, 2, 3 | 30.0 ± 10.0 | 1.00 ± 0.00 (1: 1.00 / 2: 1.00 / 3: 1.00) |" in text


def test_bad_seeds_one_line_exit_2(capsys):
    for bad in ("1,1", "a", "-1", ""):
        assert async_vs_sync.main(["--seeds", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--seeds {bad!r} is invalid" in err
