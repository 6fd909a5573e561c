"""Per-round scalars to TensorBoard and MLflow, when those are installed (``tracking:``).

``Tracker(config, run_dir)`` opens what ``config.tracking`` asks for and
``log_round(row)`` sends one row of the rounds table:

- ``tensorboard: true`` -- event files in ``<run_dir>/tensorboard`` written with
  tensorboardX (``pip install tensorboardX``), one scalar per column of ``SCALARS``
  under ``fedjax_grid/<column>``, at step = the round (async: the server version);
  ``tensorboard --logdir runs`` then shows every run;
- ``mlflow: true`` -- an MLflow run (``pip install mlflow``) in the experiment named
  after ``config.name`` at ``tracking.mlflow_uri`` (default: MLflow's own), with the
  flattened config as parameters and the same scalars as metrics. MLflow 3 wants a
  tracking server (``http://...``) or a database URI; a local ``file:`` store only with
  ``MLFLOW_ALLOW_FILE_STORE=true`` (tested with mlflow-skinny 3.18 that way).

A library that is not installed is a one-line ``UserError`` before anything starts
(``check(config)``), naming the package to install. Accuracies are fractions in [0, 1]
here as in the records (docs/RECORDS.md). ``export(run_dir, ...)`` writes an existing
run's rounds table the same way (the runs panel's export button).
"""
from __future__ import annotations

import importlib.util
import math
import pathlib
import time
from typing import Mapping, Optional

from fedjax_grid.errors import UserError

#: Columns of the rounds table that are exported (others are flags or ids).
SCALARS = ("global_accuracy", "global_loss", "round_time_s", "elapsed_s", "clients_ok",
           "clients_late", "clients_failed", "clients_rejected", "clients_offline",
           "clients_dropped", "bytes_sent", "bytes_received")
TAG_PREFIX = "fedjax_grid/"
PACKAGES = {"tensorboard": ("tensorboardX", "tensorboardX"), "mlflow": ("mlflow", "mlflow")}


def available(what: str) -> bool:
    """Whether the library behind ``what`` ('tensorboard' or 'mlflow') can be imported."""
    return importlib.util.find_spec(PACKAGES[what][0]) is not None


def check(config) -> None:
    """One-line UserError when ``config.tracking`` asks for a library that is not installed."""
    for what in ("tensorboard", "mlflow"):
        if getattr(config.tracking, what) and not available(what):
            raise UserError(f"tracking.{what}=true needs the {PACKAGES[what][1]} package, which "
                            f"is not installed; allowed: pip install {PACKAGES[what][1]}, or "
                            f"tracking.{what}=false", path=f"tracking.{what}")


def scalars(row: Mapping) -> dict[str, float]:
    """The finite numbers of ``SCALARS`` in one rounds row."""
    out = {}
    for key in SCALARS:
        value = row.get(key)
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            out[key] = value
    return out


class Tracker:
    """The TensorBoard writer and/or MLflow run of one run folder (see the module docstring)."""

    def __init__(self, config, run_dir, *, run_name: Optional[str] = None):
        check(config)
        self.run_dir = pathlib.Path(run_dir)
        self.tb = None
        self.mlflow = None
        self.run_id = None
        name = run_name or self.run_dir.name
        if config.tracking.tensorboard:
            from tensorboardX import SummaryWriter
            self.tb = SummaryWriter(logdir=str(self.run_dir / "tensorboard"), flush_secs=5)
        if config.tracking.mlflow:
            self._open_mlflow(config, name)

    @property
    def active(self) -> bool:
        return self.tb is not None or self.mlflow is not None

    def _open_mlflow(self, config, name: str) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
        client = MlflowClient(tracking_uri=config.tracking.mlflow_uri)
        experiment = client.get_experiment_by_name(config.name)
        exp_id = experiment.experiment_id if experiment else client.create_experiment(config.name)
        run = client.create_run(exp_id, run_name=name,
                                tags={"fedjax_grid.run_dir": str(self.run_dir.resolve())})
        params = [Param(k, str(v)[:500]) for k, v in sorted(flat(config.to_dict()).items())]
        for i in range(0, len(params), 100):   # MLflow takes at most 100 params per batch
            client.log_batch(run.info.run_id, params=params[i:i + 100])
        self.mlflow, self.run_id = client, run.info.run_id

    def log_round(self, row: Mapping) -> None:
        """Send one rounds row (step = its ``round``)."""
        step = int(row["round"])
        values = scalars(row)
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(TAG_PREFIX + key, value, step)
        if self.mlflow is not None:
            from mlflow.entities import Metric
            now = int(time.time() * 1000)
            self.mlflow.log_batch(self.run_id, metrics=[Metric(k, v, now, step)
                                                        for k, v in values.items()])

    def close(self, status: str = "FINISHED") -> None:
        """Flush and close (MLflow status: FINISHED, KILLED for a stopped run, FAILED)."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.mlflow is not None:
            self.mlflow.set_terminated(self.run_id, status)
            self.mlflow = None


def flat(d: Mapping, prefix: str = "") -> dict:
    """A nested dict as ``{'a.b': value}``."""
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def export(run_dir, *, tensorboard: bool = True, mlflow: bool = False,
           mlflow_uri: Optional[str] = None) -> Tracker:
    """Write the stored run in ``run_dir`` (its config.json and rounds table) to TensorBoard
    and/or MLflow now; returns the closed Tracker."""
    from fedjax_grid.experiments import ExperimentConfig
    from fedjax_grid.grid.records import Records
    run_dir = pathlib.Path(run_dir)
    cfg = ExperimentConfig.load(run_dir / "config.json")
    cfg = cfg.with_overrides([f"tracking.tensorboard={str(tensorboard).lower()}",
                              f"tracking.mlflow={str(mlflow).lower()}"]
                             + ([f"tracking.mlflow_uri={mlflow_uri}"] if mlflow_uri else []))
    fmt = "parquet" if (run_dir / "rounds.parquet").is_file() else "csv"
    rounds = Records.load(run_dir, fmt=fmt).rounds()
    tracker = Tracker(cfg, run_dir)
    for row in rounds.to_dict("records"):
        tracker.log_round(row)
    tracker.close()
    return tracker
