"""Running a federated experiment: the engine, its run context, round policies, resume.

- :mod:`.engine` -- :class:`FederatedRun`: a run's life cycle (lock, grid, stages, loop);
- :mod:`.context` -- :class:`RunContext`: everything a round needs, shared by the policies;
- :mod:`.policies` -- round policies, one file each (``sync``, ``async``);
- :mod:`.clients` -- the per-client state store; :mod:`.broadcast` -- what workers receive;
- :mod:`.rows` -- records rows; :mod:`.evaluation` -- the coordinator's evaluation and
  BatchNorm re-estimation.

This layer sits above both :mod:`fedjax_grid.experiments` (what to run) and
:mod:`fedjax_grid.grid` (the Dask runtime), which do not import each other.
"""
from fedjax_grid.runner.engine import FederatedRun

__all__ = ["FederatedRun"]
