"""Failure kinds are exception types; a row's reason is derived from its kind."""
import pickle

import pytest

from fedjax_grid import failures as F
from fedjax_grid.compression.chain import StaleCopy
from fedjax_grid.grid.dispatch import failure_of


class _Future:
    """The part of a Dask future ``failure_of`` reads."""

    def __init__(self, exc):
        self.exc = exc

    def exception(self, timeout=None):
        return self.exc


def test_reasons_are_derived_from_the_kinds():
    assert F.WorkerLost("tcp://1.2.3.4:5").reason == \
        "WorkerLost: lost worker tcp://1.2.3.4:5 while running the task (KilledWorker)"
    assert F.TaskTimeout("past the round deadline").reason == "TaskTimeout: past the round deadline"
    assert F.TaskError.of(ValueError("bad\nsecond line")).reason == "ValueError: bad"
    assert issubclass(F.StaleCopy, F.Failed) and issubclass(F.NotNeeded, F.Late)
    assert StaleCopy is F.StaleCopy  # raised on workers by the broadcast chain


@pytest.mark.parametrize("exc,kind,reason", [
    (type("KilledWorker", (Exception,), {})("Attempted to run task 'k' on 1 different workers, "
                                            "but all those workers died while running it. The "
                                            "last worker was tcp://127.0.0.1:4567."),
     F.WorkerLost, "WorkerLost: lost worker tcp://127.0.0.1:4567 while running the task"),
    (F.StaleCopy("this desktop holds versions [1]"), F.StaleCopy, "StaleCopy: this desktop holds"),
    (F.SimulatedDropout("client 3 dropped out"), F.SimulatedDropout, "SimulatedDropout: client 3"),
    (RuntimeError("boom"), F.TaskError, "RuntimeError: boom"),
])
def test_a_failed_future_is_classified_by_type(exc, kind, reason):
    failure = failure_of(_Future(pickle.loads(pickle.dumps(exc)) if kind is not F.WorkerLost else exc))
    assert type(failure) is kind and failure.reason.startswith(reason)
    if kind is F.WorkerLost:
        assert failure.worker == "tcp://127.0.0.1:4567"


class _Cancelled:
    """A Dask future the scheduler cancelled (e.g. its input was lost with a desktop)."""
    status = "cancelled"

    def exception(self, timeout=None):
        return None  # what Dask answers for a cancelled future: not an error to classify

    def result(self, timeout=None):
        from distributed.client import FutureCancelledError
        raise FutureCancelledError("client_update-r0-c1-a0-x", reason="lost dependencies")


def test_a_cancelled_future_is_input_lost_not_nonetype():
    failure = failure_of(_Cancelled())
    assert type(failure) is F.InputLost and isinstance(failure, F.Failed)
    assert failure.reason.startswith("InputLost: the global weights it needed were lost")
    assert "Dask: lost dependencies" in failure.reason and "NoneType" not in failure.reason
