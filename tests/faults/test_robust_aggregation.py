"""20% of 10 clients send x10-scaled updates: FedAvg degrades, robust aggregators hold.

Reduced version of ``benchmarks/robust_aggregation.py`` (3 rounds, 'scale' attack only);
about 45 s alone on 2 cores (plus cluster start-up), marked slow.
"""
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_robust_aggregators_resist_scaled_updates(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from robust_aggregation import robust_table
    table = robust_table(rounds=3, attacks=("scale",),
                         defences=("mean (FedAvg)", "median", "trimmed_mean 0.2", "clipped_mean"),
                         out_dir=str(tmp_path))
    print(table.to_string(index=False))
    acc = table.set_index(["attack", "defence"])["final_accuracy"]
    clean = acc[("none", "mean (FedAvg)")]
    assert clean > 0.7
    assert acc[("scale", "mean (FedAvg)")] < clean - 0.2  # FedAvg is wrecked by 2 of 10 clients
    for robust in ("median", "trimmed_mean 0.2", "clipped_mean"):
        assert acc[("scale", robust)] > clean - 0.08, (robust, acc[("scale", robust)], clean)
