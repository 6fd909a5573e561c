"""fedjax_grid: federated deep learning of image classifiers on a desktop grid.

What notebooks and users call is exported here (imported on first use, so
``import fedjax_grid`` stays cheap)::

    from fedjax_grid import get_preset, FederatedRun, open_cluster, plots
    cfg = get_preset("quickstart").with_overrides(["training.rounds=3"])
    with FederatedRun(cfg, out_dir="runs/q") as run:
        records = run.run()
    plots.global_accuracy(records.rounds())

Layout (read it as the architecture; the layers are enforced by import-linter,
see pyproject.toml):

  cli, widgets   the command line and the notebooks' panels
  runner/        a run: the engine, its run context, round policies (sync, async), resume
  emulation/     an emulated desktop grid on one Linux machine (namespaces, tc, cgroups)
  plots/         seaborn figures from the tidy records
  experiments/   typed configuration, presets and the builders of a run's parts
  grid/          Dask runtime: cluster, worker plugin, tasks, dispatch, records, checkpoints
  training/      jit-compiled local trainer (pure functions, cached compilation)
  hazards/       fault plans, attacks and link models of the desktops (pure, seeded)
  federated/     aggregation, server optimizers, client algorithms (pure init/apply)
  partition/     distribution types and forming strategies (pure functions)
  models/        Flax VGG and MobileNetV3, with XLA:CPU fast paths
  data/          indexable sources (tfds array_record), fragments (uint8 images)
  compression/   update and broadcast codecs (pure)
  streams, failures, registry, errors, version, accelerator: the named random
                 streams, failure kinds, the plug-in registry, one-line errors, the
                 version, one GPU shared by a desktop's processes
"""
from __future__ import annotations

import importlib

from fedjax_grid.accelerator import share_accelerator_memory
from fedjax_grid.version import __version__

share_accelerator_memory()  # before any JAX backend starts here: GPUs are shared (accelerator)

#: public name -> the module that defines it (a module itself when the name is its last part)
_EXPORTS = {
    # configuration and presets
    "ExperimentConfig": "fedjax_grid.experiments.config",
    "get_preset": "fedjax_grid.experiments.presets",
    "list_presets": "fedjax_grid.experiments.presets",
    "scaled_down": "fedjax_grid.experiments.presets",
    "study_table": "fedjax_grid.experiments.study",
    "local_sets": "fedjax_grid.experiments.build",
    "forming_rng": "fedjax_grid.experiments.build",
    # running, resuming, records
    "FederatedRun": "fedjax_grid.runner.engine",
    "run_variants": "fedjax_grid.runner.variants",
    "resume_config": "fedjax_grid.runner.resume",
    "Records": "fedjax_grid.grid.records",
    "concat_runs": "fedjax_grid.grid.records",
    # the grid
    "open_cluster": "fedjax_grid.grid.cluster",
    "notebook_dir": "fedjax_grid.grid.run_dirs",
    "slug": "fedjax_grid.grid.run_dirs",
    "run_index": "fedjax_grid.runner.run_index",
    # cost before a run, progress during it, tracking after it
    "estimate_config": "fedjax_grid.experiments.cost",
    "RoundBar": "fedjax_grid.progress",
    "tracking": "fedjax_grid.tracking",
    # data and partitions
    "list_sources": "fedjax_grid.data",
    "load_source": "fedjax_grid.data",
    "shared_data_dir": "fedjax_grid.data",
    "DISTRIBUTIONS": "fedjax_grid.partition",
    "FORMING": "fedjax_grid.partition",
    "Distribution": "fedjax_grid.partition",
    "distribute": "fedjax_grid.partition",
    "make_strategy": "fedjax_grid.partition",
    "label_table": "fedjax_grid.partition.report",
    # plug-in registries
    "MODELS": "fedjax_grid.models",
    "AGGREGATORS": "fedjax_grid.federated.aggregators",
    "CLIENT_ALGORITHMS": "fedjax_grid.federated.client_algorithms",
    "ROUND_POLICIES": "fedjax_grid.federated.round_policies",
    "CODECS": "fedjax_grid.compression",
    # figures and panels
    "plots": "fedjax_grid.plots",
    "PlotFigure": "fedjax_grid.plots",
    "ConfigPanel": "fedjax_grid.widgets",
    "RunPanel": "fedjax_grid.widgets",
    "RunsPanel": "fedjax_grid.widgets",
    "ClusterPanel": "fedjax_grid.widgets",
    "dashboard_html": "fedjax_grid.widgets",
    # an emulated desktop grid on this machine (Linux, root)
    "EmulatedGrid": "fedjax_grid.emulation.api",
    "emulation": "fedjax_grid.emulation",   # emulation.skip_reason(): why not, in one line
    # simulated faults and links
    "faults": "fedjax_grid.hazards.faults",
    "links": "fedjax_grid.hazards.links",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    """Import a public name on first use (PEP 562)."""
    where = _EXPORTS.get(name)
    if where is None:
        raise AttributeError(f"module 'fedjax_grid' has no attribute {name!r}")
    module = importlib.import_module(where)
    value = module if where.rsplit(".", 1)[-1] == name else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
