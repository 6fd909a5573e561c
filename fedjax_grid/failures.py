"""Why a client task did not deliver an update: failure kinds as exception types.

A task row's ``reason`` is derived from its kind: ``f"{Kind}: {detail}"``
(:attr:`TaskFailure.reason`), and the engine decides by type, never by text::

    TaskFailure                    a task that delivered no usable update
    +-- Failed                     status 'failed' (may be re-submitted, attempt + 1)
    |   +-- WorkerLost             its desktop was lost while running it (Dask KilledWorker)
    |   +-- ResultLost             it finished, but its result went with its desktop
    |   +-- StaleCopy              the desktop's copy of the model could not be brought to
    |   |                          the broadcast's version (delta broadcast): re-broadcast
    |   +-- SimulatedDropout       fault simulation: the desktop dropped out after training
    |   +-- InputLost              its input (the global weights) went with the desktops
    |   |                          holding it before it ran, and it could not be sent again
    |   +-- TaskError              anything else the task raised (detail: its type and text)
    +-- Late                       status 'late' (its result, if any, is not used)
        +-- TaskTimeout            past the round's deadline / running longer than
        |                          grid.deadline_s, or its result not fetched in time
        +-- NotNeeded              the overcommit quota was met without it
        +-- NoWorker               no responsive worker took the global weights

``StaleCopy`` and ``SimulatedDropout`` are raised on the worker; Dask re-raises them on
the coordinator with their type, so :func:`failure_of` recognises them as they are.
"""
from __future__ import annotations


class TaskFailure(RuntimeError):
    """A client task that delivered no usable update; ``reason`` is the row's text."""

    @property
    def kind(self) -> str:
        return type(self).__name__

    @property
    def reason(self) -> str:
        """``'<Kind>: <detail>'`` (one line, as recorded in the task's row)."""
        detail = str(self).splitlines()[0] if str(self) else ""
        return f"{self.kind}: {detail}" if detail else self.kind


class Failed(TaskFailure):
    """Status ``failed``: the task may be re-submitted while retries remain."""


class WorkerLost(Failed):
    """The desktop running the task was lost (Dask ``KilledWorker``); ``worker`` its address."""

    def __init__(self, worker: str = ""):
        super().__init__(f"lost worker {worker or '?'} while running the task (KilledWorker)")
        self.worker = worker


class ResultLost(Failed):
    """The task finished, but its result went with its desktop before it was fetched."""


class StaleCopy(Failed, ValueError):
    """A chain payload that cannot bring this desktop's copy to its version."""


class SimulatedDropout(Failed):
    """A simulated desktop that dropped out after training (fault simulation)."""


class InputLost(Failed):
    """The task never ran: the global weights it needed were lost with the desktops that
    held them (Dask cancels it: 'lost dependencies'), and no worker took them again.
    (When a worker does take them, the dispatch re-sends the task itself: no row, no
    retry spent.)"""


class TaskError(Failed):
    """The task raised anything else; the detail is ``'<its type>: <its first line>'``."""

    @classmethod
    def of(cls, exc: BaseException) -> "TaskError":
        text = str(exc).splitlines()[0] if str(exc) else ""
        return cls(f"{type(exc).__name__}: {text}")

    @property
    def reason(self) -> str:
        """The exception's own ``'<type>: <text>'`` (the task's error as raised)."""
        return str(self)


class Late(TaskFailure):
    """Status ``late``: the task's result, if it comes, is not used."""


class TaskTimeout(Late):
    """Past the round's deadline, running longer than ``grid.deadline_s``, or its result
    not fetched in time (a desktop that froze after finishing)."""


class NotNeeded(Late):
    """Not needed: the round's overcommit quota was met without it."""


class NoWorker(Late):
    """No responsive worker took the global weights (the task was never sent)."""
