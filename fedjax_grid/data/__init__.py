"""Image data sources as random-access ``ImageDataset``s backed by tfds array_record.

``load_source(name, split, path=..., data_dir=...)``, ``prepare_source``,
``list_sources``; ``default_data_dir()`` / ``shared_data_dir()``. Sources yield
uint8 images; standardisation and augmentation happen inside the compiled train
step (``fedjax_grid.training.Standardize`` / ``random_crop_flip``).
"""
from fedjax_grid.data.base import ArrayDataset, DatasetInfo, ImageDataset
from fedjax_grid.data.paths import default_data_dir, shared_data_dir
from fedjax_grid.data.registry import list_sources, load_source, prepare_source

__all__ = [
    "ArrayDataset", "DatasetInfo", "ImageDataset", "default_data_dir", "shared_data_dir",
    "list_sources", "load_source", "prepare_source",
]
