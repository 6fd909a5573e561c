"""When the coordinator gives up fetching a result (``grid.fetch.verdict``, pure)."""
from fedjax_grid.grid.fetch import (RESULT_TIMEOUT_S, SLOWEST_LINK_BPS, UNRESPONSIVE_S,
                                    payload_limit_s, verdict)

MB23 = 2_330_000  # the float32 quickstart's update


def holder(age_s=0.5, nbytes=MB23):
    return {"worker": "tls://10.1.2.10:4000", "nbytes": nbytes, "age_s": age_s}


def test_a_desktop_that_heartbeats_is_waited_for_as_long_as_its_payload_needs():
    # 19 s of a 1 Mbit/s uplink: the old fixed 10 s gave up here
    assert verdict(elapsed_s=19.0, holder=holder(), deadline_left_s=None) is None
    limit = payload_limit_s(MB23)
    assert limit == RESULT_TIMEOUT_S + 8 * MB23 / SLOWEST_LINK_BPS
    assert verdict(elapsed_s=limit - 0.1, holder=holder(), deadline_left_s=None) is None
    why = verdict(elapsed_s=limit + 0.1, holder=holder(), deadline_left_s=None)
    assert "2.33 MB" in why and "tls://10.1.2.10:4000" in why and "kbit/s" in why


def test_an_unresponsive_desktop_is_given_up_on_its_heartbeat_not_its_payload():
    assert verdict(elapsed_s=2.0, holder=holder(age_s=UNRESPONSIVE_S - 1), deadline_left_s=None) is None
    why = verdict(elapsed_s=2.0, holder=holder(age_s=UNRESPONSIVE_S + 1), deadline_left_s=None)
    assert "unresponsive" in why and "no heartbeat for 11 s" in why


def test_the_rounds_deadline_bounds_a_fetch_with_a_short_grace():
    assert verdict(elapsed_s=5.0, holder=holder(), deadline_left_s=-0.5) is None
    assert "deadline passed" in verdict(elapsed_s=5.0, holder=holder(), deadline_left_s=-1.5)
    # a fetch begun after the deadline still gets its grace
    assert verdict(elapsed_s=0.5, holder=holder(), deadline_left_s=-30.0) is None


def test_unknown_size_and_holder_fall_back_to_the_fixed_part():
    h = {"worker": "", "nbytes": None, "age_s": None}
    assert verdict(elapsed_s=RESULT_TIMEOUT_S - 1, holder=h, deadline_left_s=None) is None
    assert "?" in verdict(elapsed_s=RESULT_TIMEOUT_S + 1, holder=h, deadline_left_s=None)
