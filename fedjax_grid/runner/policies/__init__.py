"""Round policies, one file each; each registers itself in
:data:`fedjax_grid.federated.round_policies.ROUND_POLICIES` (``server.mode``).

- :mod:`.sync` (``sync``): rounds with a barrier -- sample, broadcast, collect until the
  quota, the deadline or all are in, one server step (FedAvg / FedOpt / FedProx);
- :mod:`.asynchronous` (``async``): FedBuff -- K tasks always in flight, one server
  update every M accepted deltas, stale deltas down-weighted.

A new policy is one file here: a class taking the run's
:class:`~fedjax_grid.runner.context.RunContext`, with ``step(prelaunch)``,
``drop_ahead()``, ``stop()`` and ``close()``, registered with ``@ROUND_POLICIES.register(name)``.
"""
# the default first (the order names are listed in): a new file needs no line here
from fedjax_grid.runner.policies import sync, asynchronous  # noqa: F401, E402, I001
