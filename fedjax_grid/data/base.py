"""The indexable image data set every source yields.

An ``ImageDataset`` gives random access by integer index, which is what
index-based partitions need: ``ds[i]`` is one example, ``ds.__getitems__(idx)``
a batch, ``ds.labels`` all labels without decoding any image.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts of a data set.

    image_shape: (H, W, C) of the uint8 images the data set yields.
    split_sizes: number of examples per split, e.g. {'train': 5085, 'test': 1017}.
    """
    name: str
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    split_sizes: dict[str, int]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@runtime_checkable
class ImageDataset(Protocol):
    """Random-access image classification split.

    ``__getitem__(i) -> {'image': uint8 (H, W, C), 'label': int}``
    ``__getitems__(idx) -> {'image': uint8 (n, H, W, C), 'label': int32 (n,)}``
    ``labels``: int32 (N,), every label in index order.
    """
    info: DatasetInfo

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict: ...

    def __getitems__(self, indices: Sequence[int]) -> dict: ...

    @property
    def labels(self) -> np.ndarray: ...


class ArrayDataset:
    """An ``ImageDataset`` over in-memory arrays.

    images: uint8 (N, H, W, C); labels: int (N,).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, info: DatasetInfo):
        images = np.asarray(images)
        labels = np.asarray(labels, dtype=np.int32)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self._labels = labels
        self.info = info

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": int(self._labels[index])}

    def __getitems__(self, indices: Sequence[int]) -> dict:
        idx = np.asarray(indices, dtype=np.int64)
        return {"image": self.images[idx], "label": self._labels[idx]}

    @property
    def labels(self) -> np.ndarray:
        return self._labels
