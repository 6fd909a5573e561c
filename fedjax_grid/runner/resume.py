"""The config of a stored run, for ``--resume``: what may change, what may not.

A run folder holds ``config.json`` (written with every checkpoint) and, inside
each checkpoint, the same config. Resuming continues *that* experiment, so the
stored config is the base; a ``--config`` / ``--preset`` / ``--set`` given as
well may only change what does not alter the run's trajectory (the same keys the
config's ``fingerprint`` leaves out: ``name``, ``out_dir``, ``training.rounds``
``grid.*`` and ``tracking.*``). Anything else is a conflict, reported as one line.
"""
from __future__ import annotations

import pathlib
from typing import Optional, Sequence

from fedjax_grid.errors import CheckpointError, UserError
from fedjax_grid.experiments.config import ExperimentConfig

#: Config keys a resume may change (the rest is the experiment itself).
MAY_CHANGE = ("name", "out_dir", "training.rounds", "grid.*", "tracking.*")


def stored_config(run_dir) -> ExperimentConfig:
    """The config of the run stored in ``run_dir``: its config.json, else its last checkpoint's.

    A run written by an earlier version with the flat config keys (``partition.beta``,
    ``server.lr``, ...) is refused in one line: its checkpoints carry the fingerprint
    of the old shape, so this version cannot continue them.
    """
    run_dir = pathlib.Path(run_dir)
    path = run_dir / "config.json"
    if path.is_file():
        return _current(ExperimentConfig.load(path), run_dir)
    from fedjax_grid.grid.checkpoint import latest_checkpoint, load_checkpoint
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise CheckpointError(f"--resume: no checkpoint in {str(run_dir / 'checkpoints')!r} "
                              f"and no config.json in {str(run_dir)!r}: nothing to resume")
    _, meta, _ = load_checkpoint(ckpt)  # verifies the file; one line naming it if damaged
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"checkpoint {str(ckpt)!r} holds no config; allowed: a checkpoint "
                              "written by FederatedRun")
    return _current(ExperimentConfig.from_dict(meta["config"]), run_dir)


def _current(cfg: ExperimentConfig, run_dir: pathlib.Path) -> ExperimentConfig:
    if cfg.legacy_keys:
        raise CheckpointError(
            f"--resume: the run in {str(run_dir)!r} was written by an earlier fedjax-grid with "
            f"flat config keys ({', '.join(cfg.legacy_keys[:2])}, ...) and cannot be continued "
            f"by this version; start it again from its config: fedjax-grid run --config "
            f"{str(run_dir / 'config.json')!r} --out NEW_FOLDER")
    return cfg


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k != "kwargs":
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def differences(a: ExperimentConfig, b: ExperimentConfig) -> list[str]:
    """Dotted keys whose values differ and that a resume may not change."""
    fa, fb = _flat(a.to_dict()), _flat(b.to_dict())
    keys = sorted(set(fa) | set(fb))
    return [k for k in keys if fa.get(k) != fb.get(k) and k not in ("name", "out_dir",
                                                                   "training.rounds")
            and not k.startswith(("grid.", "tracking."))]


def resume_config(run_dir, given: Optional[ExperimentConfig] = None, given_by: str = "",
                  overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The config to continue the run in ``run_dir`` with.

    given: a config from ``--config`` / ``--preset`` (``given_by`` names the flag for
    the message), used when it is the same experiment (e.g. more ``training.rounds``).
    overrides: ``--set`` items applied to the stored config when nothing is given.
    Raises UserError (one line) on a conflict.
    """
    stored = stored_config(run_dir)
    if given is not None:
        cfg, what = given, given_by or "the given config"
    else:
        cfg = stored.with_overrides(list(overrides)) if overrides else stored
        what = " ".join(f"--set {o}" for o in overrides)
    diff = differences(stored, cfg)
    if diff:
        shown = ", ".join(diff[:4]) + (" ..." if len(diff) > 4 else "")
        raise UserError(f"{what} conflicts with the run in {str(run_dir)!r} (differs in {shown}); "
                        f"--resume continues that run with its config.json, where only "
                        f"{', '.join(MAY_CHANGE)} may change: drop the conflicting option")
    return cfg.validate()
