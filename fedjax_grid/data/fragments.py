"""``texture_fragments`` source: large texture photos cut into many small fragments.

The study cut 654 photos of 2272x1074 px into 6972 fragments each (256x256, with
rotation, overlap and contrast normalisation): 4.5 M fragments. Here fragments are
never materialised: a fragment is an integer index, mapped arithmetically to
``(image, y, x, transform)``:

* every image ``i`` (H_i x W_i, read from its header) has a grid of
  ``ny_i * nx_i`` top-left positions ``y = m + stride * r``, ``x = m + stride * c``
  with ``0 <= r < ny_i = (H_i - 2m - size) // stride + 1`` (likewise x), where the
  margin ``m`` is 0 for right-angle rotations and large enough for arbitrary angles
  that the rotated square never reaches outside the photo (no black corners);
* every position comes in ``T = len(angles) * (2 if flips else 1)`` transforms;
  ``count_i = ny_i * nx_i * T`` (see :meth:`FragmentIndex.fragments_per_image`);
* a global index g gives the image by a binary search in the cumulative counts,
  then ``position, t = divmod(g - start_i, T)`` and ``r, c = divmod(position, nx_i)``;
  ``t`` gives ``angle = angles[t // F]`` and ``flip = t % F == 1`` (F = 1 or 2).

Memory is O(number of images) for the index plus ``labels`` (int32, one per
fragment, built with ``np.repeat``: 4 MB per million fragments).

A fragment is made by: crop (size x size; for an angle that is not a multiple of
90 degrees a larger ``size + 2m`` crop is rotated with PIL, bilinear, and its
center cut out; multiples of 90 use ``np.rot90``, exact, counter-clockwise like
PIL) -> horizontal flip -> resize to ``out_size`` (PIL bilinear, antialiased) ->
contrast normalisation:

* ``'none'``: pixels as they are;
* ``'standardize'``: per fragment, ``z = (x - mean) / std`` over all its pixels and
  channels (hue kept), then re-scaled to uint8 as ``clip(127.5 + 42.5 z, 0, 255)``
  (z in [-3, 3] spans 0..255) so that every source yields the same dtype;
* ``'equalize'``: histogram equalisation of the luma (Y of YCbCr, PIL
  ``ImageOps.equalize``), chroma kept.

Train/test are split **by source photo** (seeded, per class, shared with the plain
``textures`` source: :func:`fedjax_grid.data.textures.split_images`), so the
overlapping fragments of one photo never sit on both sides. Decoded photos are held
in a small LRU cache (``cache_images``), and a batch read decodes each photo once.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import threading
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

from fedjax_grid.data.base import DatasetInfo
from fedjax_grid.data.textures import TextureFolder, reject_options, resolve_path, split_images
from fedjax_grid.errors import UserError

NORMALIZATIONS = ("none", "standardize", "equalize")


@dataclasses.dataclass(frozen=True)
class FragmentSpec:
    """How photos are cut into fragments.

    size: fragment side in source pixels. stride: step between neighbouring
    fragments in pixels (None = size, no overlap; < size overlaps). angles:
    rotations in degrees (counter-clockwise). flips: also yield each fragment
    mirrored left-right. normalize: 'none' | 'standardize' | 'equalize'.
    out_size: side of the yielded fragment (None = size).
    """
    size: int = 256
    stride: int | None = None
    angles: tuple[float, ...] = (0.0,)
    flips: bool = False
    normalize: str = "none"
    out_size: int | None = None

    def __post_init__(self):
        for field in ("size", "stride", "out_size"):
            v = getattr(self, field)
            if v is None:
                continue
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise UserError(f"fragment {field}={v!r} must be an integer >= 1")
            object.__setattr__(self, field, int(v))
        if self.stride is None:
            object.__setattr__(self, "stride", self.size)
        if self.out_size is None:
            object.__setattr__(self, "out_size", self.size)
        angles = (self.angles,) if isinstance(self.angles, (int, float)) else tuple(self.angles)
        if not angles:
            raise UserError("fragment angles=() must hold at least one angle (e.g. (0,))")
        try:
            angles = tuple(float(a) % 360.0 for a in angles)
        except (TypeError, ValueError):
            raise UserError(f"fragment angles={self.angles!r} must be numbers (degrees)") from None
        if len(set(angles)) != len(angles):
            raise UserError(f"fragment angles={self.angles!r} repeat an angle (mod 360)")
        object.__setattr__(self, "angles", angles)
        object.__setattr__(self, "flips", bool(self.flips))
        if self.normalize not in NORMALIZATIONS:
            raise UserError(f"fragment normalize={self.normalize!r} is unknown; allowed: "
                            f"{', '.join(NORMALIZATIONS)}")

    @property
    def num_transforms(self) -> int:
        """T: transforms per position (angles x flips)."""
        return len(self.angles) * (2 if self.flips else 1)

    @property
    def margin(self) -> int:
        """Border m kept free around each fragment so arbitrary rotations stay inside."""
        m = 0
        for a in self.angles:
            if a % 90.0:
                r = math.radians(a)
                m = max(m, math.ceil(self.size / 2 * (abs(math.cos(r)) + abs(math.sin(r)) - 1)) + 1)
        return m

    def transform(self, t: int) -> tuple[float, bool]:
        """Transform id -> (angle in degrees, flipped)."""
        f = 2 if self.flips else 1
        return self.angles[t // f], bool(t % f)


class FragmentIndex:
    """Arithmetic index of the fragments of images with the given sizes.

    sizes: int (N, 2) of (H, W) per image, in index order. Holds only O(N) arrays.
    """

    def __init__(self, sizes: np.ndarray, spec: FragmentSpec):
        self.spec = spec
        sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        span = spec.size + 2 * spec.margin
        fit = np.maximum(sizes - span, -1)
        grid = np.where(fit >= 0, fit // spec.stride + 1, 0)
        self.ny = grid[:, 0].astype(np.int64)
        self.nx = grid[:, 1].astype(np.int64)
        self.counts = self.ny * self.nx * spec.num_transforms
        self.ends = np.cumsum(self.counts)
        self.starts = self.ends - self.counts

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def fragments_per_image(self) -> np.ndarray:
        """int64 (N,): fragments of each image (0 when it is smaller than a fragment)."""
        return self.counts.copy()

    def locate(self, indices) -> dict:
        """Fragment indices -> dict of int64 arrays 'image' (position in ``sizes``),
        'y', 'x' (top-left in source pixels) and 'transform' (see ``spec.transform``)."""
        g = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if g.size and (g.min() < -n or g.max() >= n):
            bad = g[(g < -n) | (g >= n)][0]
            raise IndexError(f"fragment index {bad} out of range for {n} fragments")
        g = np.where(g < 0, g + n, g)
        image = np.searchsorted(self.ends, g, side="right")
        local = g - self.starts[image]
        pos, transform = np.divmod(local, self.spec.num_transforms)
        r, c = np.divmod(pos, self.nx[image])
        m, stride = self.spec.margin, self.spec.stride
        return {"image": image, "y": m + r * stride, "x": m + c * stride, "transform": transform}

    def labels(self, image_labels: np.ndarray) -> np.ndarray:
        """int32 (len,): the label of each fragment's source image."""
        return np.repeat(np.asarray(image_labels, dtype=np.int32), self.counts)


def cut_fragment(image: np.ndarray, y: int, x: int, angle: float, flip: bool,
                 spec: FragmentSpec) -> np.ndarray:
    """One fragment of a uint8 (H, W, 3) photo -> uint8 (out_size, out_size, 3).

    (y, x): top-left of the size x size fragment; the photo must extend ``margin``
    beyond it on every side when ``angle`` is not a multiple of 90.
    """
    s = spec.size
    if angle % 90.0 == 0:
        frag = np.rot90(image[y:y + s, x:x + s], k=int(angle // 90) % 4)
    else:
        m = spec.margin
        big = Image.fromarray(np.ascontiguousarray(image[y - m:y + s + m, x - m:x + s + m]))
        frag = np.asarray(big.rotate(angle, resample=Image.Resampling.BILINEAR))[m:m + s, m:m + s]
    if flip:
        frag = frag[:, ::-1]
    frag = np.ascontiguousarray(frag)
    if spec.out_size != s:
        frag = np.asarray(Image.fromarray(frag).resize((spec.out_size, spec.out_size),
                                                       Image.Resampling.BILINEAR))
    return normalize_contrast(frag, spec.normalize)


def normalize_contrast(frag: np.ndarray, how: str) -> np.ndarray:
    """Contrast normalisation of a uint8 (h, w, 3) fragment -> uint8 (h, w, 3)."""
    if how == "none":
        return frag
    if how == "standardize":
        f = frag.astype(np.float32)
        z = (f - f.mean()) / max(float(f.std()), 1e-6)
        return np.clip(np.rint(127.5 + 42.5 * z), 0, 255).astype(np.uint8)
    if how == "equalize":
        y, cb, cr = Image.fromarray(frag).convert("YCbCr").split()
        return np.asarray(Image.merge("YCbCr", (ImageOps.equalize(y), cb, cr)).convert("RGB"))
    raise UserError(f"fragment normalize={how!r} is unknown; allowed: {', '.join(NORMALIZATIONS)}")


class FragmentDataset:
    """Texture fragments of a set of photos as an ``ImageDataset``.

    ``ds[i] -> {'image': uint8 (out, out, 3), 'label': int}``; ``labels`` int32
    (len,) = label of each fragment's source photo. image_ids: ids into ``folder``
    of the photos in this split.
    """

    def __init__(self, folder: TextureFolder, image_ids: np.ndarray, spec: FragmentSpec,
                 info: DatasetInfo, *, cache_images: int = 8):
        self.folder = folder
        self.image_ids = np.asarray(image_ids, dtype=np.int64)
        self.spec = spec
        self.index = FragmentIndex(folder.sizes()[self.image_ids], spec)
        self._labels = self.index.labels(folder.image_labels[self.image_ids])
        self.info = info
        self.cache_images = max(1, int(cache_images))
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = collections.OrderedDict()
        state["_lock"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.index)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def fragments_per_image(self) -> np.ndarray:
        """int64 (n_photos,): fragments cut from each photo of this split."""
        return self.index.fragments_per_image()

    def fragment_info(self, index: int) -> dict:
        """Where fragment ``index`` comes from: photo id/file, y, x, angle, flip."""
        loc = {k: int(v[0]) for k, v in self.index.locate([index]).items()}
        angle, flip = self.spec.transform(loc["transform"])
        image_id = int(self.image_ids[loc["image"]])
        return {"image_id": image_id, "file": self.folder.files[image_id], "y": loc["y"],
                "x": loc["x"], "angle": angle, "flip": flip,
                "label": int(self.folder.image_labels[image_id])}

    def photo(self, image_id: int) -> np.ndarray:
        """Decoded photo ``image_id`` (folder id), through the LRU cache."""
        with self._lock:
            if image_id in self._cache:
                self._cache.move_to_end(image_id)
                return self._cache[image_id]
        img = self.folder.read(image_id)
        with self._lock:
            self._cache[image_id] = img
            while len(self._cache) > self.cache_images:
                self._cache.popitem(last=False)
        return img

    def __getitem__(self, index: int) -> dict:
        batch = self.__getitems__([int(index)])
        return {"image": batch["image"][0], "label": int(batch["label"][0])}

    def __getitems__(self, indices: Sequence[int]) -> dict:
        loc = self.index.locate(indices)
        n, o = len(loc["image"]), self.spec.out_size
        images = np.empty((n, o, o, 3), np.uint8)
        order = np.argsort(loc["image"], kind="stable")  # decode every photo once per batch
        for j in order:
            photo = self.photo(int(self.image_ids[loc["image"][j]]))
            angle, flip = self.spec.transform(int(loc["transform"][j]))
            images[j] = cut_fragment(photo, int(loc["y"][j]), int(loc["x"][j]), angle, flip, self.spec)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return {"image": images, "label": self._labels[idx]}


def load(split: str = "train", *, path=None, data_dir=None, size: int = 256, stride: int | None = None,
         angles: Sequence[float] = (0.0,), flips: bool = False, normalize: str = "none",
         out_size: int | None = None, test_fraction: float = 0.2, seed: int = 0,
         cache_images: int = 8, spec: FragmentSpec | None = None, image_size: int | None = None,
         **unknown) -> FragmentDataset:
    """The ``texture_fragments`` source over a ``textures`` folder or zip.

    split: 'train' | 'test' | 'all', split by source photo (seeded, per class).
    Fragment parameters as in :class:`FragmentSpec` (or pass ``spec``);
    ``image_size`` (the option every image source takes) is an alias of ``out_size``.
    Raises UserError when no photo of the split is large enough for one fragment.
    """
    reject_options("texture_fragments", unknown, "size, stride, angles, flips, normalize, out_size, "
                   "image_size, test_fraction, seed, cache_images, spec")
    if image_size is not None and out_size is not None and int(image_size) != int(out_size):
        raise UserError(f"image_size={image_size!r} and out_size={out_size!r} disagree; give one")
    out_size = out_size if out_size is not None else image_size
    spec = spec or FragmentSpec(size=size, stride=stride, angles=tuple(np.atleast_1d(angles).tolist()),
                                flips=flips, normalize=normalize, out_size=out_size)
    folder = TextureFolder(resolve_path("texture_fragments", path, data_dir))
    ids = split_images(folder.image_labels, split, test_fraction=test_fraction, seed=seed)
    all_index = FragmentIndex(folder.sizes(), spec)
    per_image = all_index.fragments_per_image()
    split_sizes = {s: int(per_image[split_images(folder.image_labels, s, test_fraction=test_fraction,
                                                 seed=seed)].sum()) for s in ("train", "test")}
    if len(ids) and per_image[ids].sum() == 0:
        smallest = folder.sizes()[ids].min(axis=0)
        raise UserError(f"fragment size={spec.size} (+ margin {spec.margin} for rotation) is larger "
                        f"than every photo of split {split!r} (smallest H, W = {tuple(int(v) for v in smallest)})")
    info = DatasetInfo(name="texture_fragments", num_classes=len(folder.class_names),
                       class_names=folder.class_names, image_shape=(spec.out_size, spec.out_size, 3),
                       split_sizes=split_sizes)
    return FragmentDataset(folder, ids, spec, info, cache_images=cache_images)


def prepare(*, path=None, data_dir=None, **opts):
    """Fragments are cut lazily from the photos: there is nothing to prepare."""
    raise UserError("source 'texture_fragments' is cut lazily from the photos and needs no "
                    "preparing; give load_source path= (folder or .zip of class folders)")


# ---------------------------------------------------------------- registration

from typing import Literal, Optional  # noqa: E402

from pydantic import Field  # noqa: E402

from fedjax_grid.data.registry import SOURCES, Source  # noqa: E402
from fedjax_grid.registry import Params  # noqa: E402


class FragmentOptions(Params):
    """Options of ``texture_fragments`` (the yielded side is ``data.image_size``)."""
    size: int = Field(256, ge=8, le=4096, description="fragment side in source pixels")
    stride: Optional[int] = Field(None, ge=8, le=4096, description=(
        "step between fragments (null: size; at least 8 pixels: each step multiplies the "
        "fragments a photo yields)"))
    angles: list[float] = Field(default_factory=lambda: [0.0], min_length=1, max_length=360,
                                description="rotations in degrees (1-360 of them)")
    flips: bool = Field(False, description="also yield each fragment mirrored")
    normalize: Literal["none", "standardize", "equalize"] = Field("none", description="per-fragment normalisation")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="photos per class held out for test")
    seed: int = Field(0, ge=0, le=2 ** 32 - 1, description="seed of the train/test split by photo")
    cache_images: int = Field(8, ge=0, le=1024, description="decoded photos kept per process")


SOURCES.register("texture_fragments", FragmentOptions,
                 doc="fragments cut lazily from texture photos (rotations, flips)"
                 )(Source(load, prepare))
