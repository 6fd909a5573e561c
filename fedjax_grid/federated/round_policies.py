"""Round policies by name: who trains when, and when the server steps (``server.mode``).

``ROUND_POLICIES`` holds one entry per policy (``sync``: rounds with a barrier, FedAvg /
FedOpt; ``async``: buffered asynchronous aggregation, FedBuff). The registry lives here,
beside the pure algorithms, so that the config can check ``server.mode`` against it; the
policies themselves drive the grid and live one file each in
:mod:`fedjax_grid.runner.policies`, which is imported (its files register themselves)
the first time the registry is read.

A policy is a class ``Policy(context)`` over a :class:`~fedjax_grid.runner.context.RunContext`
with ``step(prelaunch) -> rounds-table row`` (one server update), ``drop_ahead()``
(cancel work launched ahead for a round that will not run), ``stop()`` (Stop between
rounds: record the tasks in flight as ``stopped``, return how many) and ``close()``.
"""
from fedjax_grid.registry import Registry

#: Round policies: ``ROUND_POLICIES.get(name).obj(context)`` -> the policy of a run.
ROUND_POLICIES = Registry("round policy", package="fedjax_grid.runner.policies")
