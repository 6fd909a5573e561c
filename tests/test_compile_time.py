"""Compilation charged to the intervals it was spent in (runner.compile_time)."""
import pytest

from fedjax_grid.runner.compile_time import CompileCharge, merged, within


def test_parallel_spans_count_once_and_are_cut_at_the_interval():
    assert merged([(5, 7), (0, 2), (1, 3), (7, 8)]) == [(0.0, 3.0), (5.0, 8.0)]
    assert within([(0, 10), (2, 12)], 5, 20) == pytest.approx(7.0)   # union 0..12 inside 5..20
    assert within([(0, 3)], 4, 9) == 0.0


def test_a_late_arrival_recharges_the_version_it_compiled_in():
    c = CompileCharge()
    c.add([(100.0, 110.0)])                    # worker A compiled 100..110, arrived in version 1
    v1 = c.charge(95.0, 112.0, own=1.0)
    assert v1 == pytest.approx(11.0)
    c.close(1, 95.0, 112.0, 1.0)
    # worker B compiled 101..111 too (during version 1) and arrives in version 2 (112..113)
    c.add([(101.0, 111.0)])
    assert c.charge(112.0, 113.0, own=0.0) == 0.0           # not charged to where it arrived
    assert c.recharged({1: v1})[1] == pytest.approx((12.0, 5.0))  # union 100..111 + own 1
    assert c.charge(0.0, 2.0, own=5.0) == 2.0               # never more than the interval
    c.prune(before=200.0)
    assert c.windows == {}
