"""benchmarks/compression.py: the modelled time to accuracy and the tables (no runs)."""
import math

import pytest

from benchmarks import compression as B
from fedjax_grid.grid.links import link_of


def _bytes_rows():
    rows = []
    for i, (label, up, down) in enumerate(B.SETTINGS):
        f = 2 ** i
        rows.append({"setting": label, "upload": up, "broadcast": down, "params": 10,
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


def test_accuracy_rows_and_tables():
    runs = {label: {"curve": [0.1, 0.2, 0.3, 0.4], "sent_per_round_mb": 1.0,
                    "received_per_round_mb": 1.0} for label, _, _ in B.SETTINGS}
    rows, curves = B.accuracy_rows(runs, _bytes_rows(), 0.9, compute_s=2.0)
    assert rows[0]["speedup_home"] == 1.0 and rows[0]["delta_points"] == 0.0
    speedups = [r["speedup_home"] for r in rows]
    assert speedups == sorted(speedups) and speedups[-1] > 1  # fewer bytes: sooner
    assert all(math.isclose(r["target"], 0.36) for r in rows)
    text = B.tables(_bytes_rows(), rows)
    assert text.count("\n|") >= 2 * len(B.SETTINGS) + 3 and "target accuracy: 36.00 %" in text
