"""``fedjax-grid replay RUN``: re-fold an asynchronous run's arrival log, bit for bit.

The run's config (``RUN/config.json``) rebuilds the experiment and its initial server
state; the arrivals its last checkpoint holds (``meta['async']['arrivals']``, read from
``RUN/arrivals``) are folded again in their order with the same buffer size, staleness
rule and BatchNorm re-estimation; the result is compared with the last checkpoint's state,
leaf by leaf, bit for bit. Synchronous runs need no log: running the same config again
reproduces them (see docs/RELIABILITY.md).
"""
from __future__ import annotations

import pathlib

import jax
import numpy as np

from fedjax_grid.errors import UserError, show_path


def replay_run(run_dir) -> dict:
    """``{'arrivals', 'version', 'checkpoint_version', 'leaves', 'equal'}`` of re-folding
    ``run_dir``'s arrival log from the initial state (``UserError`` in one line when it is
    not an asynchronous run folder with a checkpoint and its log)."""
    from fedjax_grid.experiments.config import ExperimentConfig
    from fedjax_grid.federated.fedbuff import replay
    from fedjax_grid.runner.arrivals import ArrivalLog
    from fedjax_grid.runner.engine import FederatedRun
    from fedjax_grid.runner.policies.asynchronous import buffer_size
    run_dir = pathlib.Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise UserError(f"replay: {show_path(run_dir)} holds no config.json; allowed: the "
                        "folder of a run (its --out)")
    cfg = ExperimentConfig.load(run_dir / "config.json")
    if cfg.server.mode != "async":
        raise UserError(f"replay: {show_path(run_dir)} is a server.mode={cfg.server.mode} run; "
                        "allowed: an asynchronous run (a synchronous one is reproduced by "
                        "running its config again)")
    run = FederatedRun(cfg, out_dir=run_dir, resume=True, notify=lambda m: None)
    n = int(run.context.restored.get("async", {}).get("arrivals", -1))
    if n < 0:
        raise UserError(f"replay: the last checkpoint in {show_path(run_dir)} does not count "
                        "its arrivals (written before the arrival log existed)")
    log = ArrivalLog(run_dir)
    missing = [i for i in range(n) if not log.path(i).is_file()]
    if missing:
        raise UserError(f"replay: {show_path(log.path(missing[0]))} is missing ({len(missing)} "
                        f"of the {n} arrivals the checkpoint holds)")
    initial, _ = run.context.exp.initial_state()
    s = cfg.server
    fold = replay(run.algorithm, initial, log.read(n), buffer_size=buffer_size(cfg),
                  staleness=s.staleness, max_staleness=s.max_staleness, on_flush=run.recalibrated)
    mine, theirs = jax.tree.leaves(fold.state), jax.tree.leaves(run.state)
    equal = len(mine) == len(theirs) and all(_same_bits(a, b) for a, b in zip(mine, theirs))
    return {"arrivals": n, "version": fold.version, "checkpoint_version": run.round,
            "leaves": len(theirs), "equal": bool(equal and fold.version == run.round)}


def _same_bits(a, b) -> bool:
    """Same dtype, shape and bytes (NaN where NaN is: a bitwise comparison)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
