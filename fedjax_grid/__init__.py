"""fedjax_grid: federated deep learning of image classifiers on a desktop grid.

Layout (read it as the architecture):
  models/       Flax VGG and MobileNetV3, with XLA:CPU fast paths
  data/         indexable sources (tfds array_record), fragments (uint8 images)
  partition/    distribution types and forming strategies (pure functions)
  training/     jit-compiled local trainer (pure functions, cached compilation)
  federated/    aggregation and server optimizers (pure init/apply pairs)
  grid/         Dask runtime: cluster, worker plugin, tasks, rounds, checkpoints
  experiments/  typed configuration and presets
  plots/        seaborn figures from the tidy records
  widgets/      ipywidgets panels for notebooks
"""

from fedjax_grid.version import __version__  # noqa: F401
