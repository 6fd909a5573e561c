"""The texture-fragment pipeline: index arithmetic, pixels, split by photo."""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from fedjax_grid.data.base import ImageDataset
from fedjax_grid.data.fragments import FragmentIndex, FragmentSpec, cut_fragment, load
from fedjax_grid.errors import UserError


def _brute_force(sizes, spec):
    """Every fragment as (image, y, x, transform), in index order, by loops."""
    out = []
    m, s, st_ = spec.margin, spec.size, spec.stride
    for i, (h, w) in enumerate(sizes):
        ys = list(range(m, h - m - s + 1, st_))
        xs = list(range(m, w - m - s + 1, st_))
        for y in ys:
            for x in xs:
                for t in range(spec.num_transforms):
                    out.append((i, y, x, t))
    return out


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(1, 90), st.integers(1, 90)), min_size=1, max_size=6),
       size=st.integers(4, 40), stride=st.integers(1, 30), flips=st.booleans(),
       angles=st.sampled_from([(0,), (0, 90, 180, 270), (0, 45), (10, 200)]))
def test_index_matches_brute_force(sizes, size, stride, flips, angles):
    spec = FragmentSpec(size=size, stride=stride, angles=angles, flips=flips)
    index = FragmentIndex(np.array(sizes), spec)
    expected = _brute_force(sizes, spec)
    assert len(index) == len(expected)
    per_image = np.bincount([e[0] for e in expected], minlength=len(sizes))
    assert np.array_equal(index.fragments_per_image(), per_image)
    if expected:
        loc = index.locate(np.arange(len(index)))
        got = list(zip(loc["image"], loc["y"], loc["x"], loc["transform"]))
        assert got == expected
        assert np.array_equal(index.labels(np.arange(len(sizes))), [e[0] for e in expected])
        with pytest.raises(IndexError):
            index.locate([len(index)])


def test_study_scale_index_is_small_and_fast():
    """654 photos of 2272x1074 -> millions of fragments without decoding anything."""
    spec = FragmentSpec(size=256, stride=32, angles=(0, 90, 180, 270))
    index = FragmentIndex(np.tile([1074, 2272], (654, 1)), spec)
    assert index.fragments_per_image()[0] == 26 * 64 * 4
    assert len(index) == 654 * 26 * 64 * 4  # 4.35 M
    labels = index.labels(np.arange(654) % 47)
    assert labels.dtype == np.int32 and labels.nbytes == 4 * len(index)
    last = index.locate([len(index) - 1])
    assert (last["image"][0], last["y"][0], last["x"][0], last["transform"][0]) == (653, 800, 2016, 3)


def test_pixels_rotations_flips():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (120, 130, 3), dtype=np.uint8)
    spec = FragmentSpec(size=32, angles=(0, 90, 180, 270), flips=True)
    base = cut_fragment(photo, 10, 20, 0.0, False, spec)
    assert np.array_equal(base, photo[10:42, 20:52])
    assert np.array_equal(cut_fragment(photo, 10, 20, 90.0, False, spec), np.rot90(base))
    assert np.array_equal(cut_fragment(photo, 10, 20, 180.0, True, spec), np.rot90(base, 2)[:, ::-1])
    # np.rot90 turns the same way as PIL's rotate (counter-clockwise)
    pil90 = np.asarray(Image.fromarray(np.ascontiguousarray(base)).rotate(90))
    assert np.array_equal(np.rot90(base), pil90)


def test_arbitrary_angle_has_no_black_corners():
    photo = np.full((200, 200, 3), 200, np.uint8)
    spec = FragmentSpec(size=64, angles=(30, 45, 77))
    assert spec.margin >= 14  # 32 * (cos45 + sin45 - 1) = 13.3
    for angle in spec.angles:
        frag = cut_fragment(photo, spec.margin, spec.margin, angle, False, spec)
        assert frag.shape == (64, 64, 3) and frag.min() == 200
    # a rotated fragment of a real pattern is the center of the rotated larger crop
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    m = spec.margin
    big = Image.fromarray(photo[50 - m:50 + 64 + m, 60 - m:60 + 64 + m]).rotate(30, resample=Image.BILINEAR)
    assert np.array_equal(cut_fragment(photo, 50, 60, 30.0, False, spec), np.asarray(big)[m:m + 64, m:m + 64])


def test_normalizations_and_resize():
    rng = np.random.default_rng(2)
    photo = (rng.integers(0, 40, (64, 64, 3)) + 100).astype(np.uint8)  # low contrast
    raw = cut_fragment(photo, 0, 0, 0.0, False, FragmentSpec(size=64, out_size=16))
    assert raw.shape == (16, 16, 3) and raw.dtype == np.uint8
    std = cut_fragment(photo, 0, 0, 0.0, False, FragmentSpec(size=64, normalize="standardize"))
    assert std.dtype == np.uint8 and abs(std.mean() - 127.5) < 2 and abs(std.std() - 42.5) < 3
    eq = cut_fragment(photo, 0, 0, 0.0, False, FragmentSpec(size=64, normalize="equalize"))
    assert eq.dtype == np.uint8 and eq.std() > 2 * photo.std()
    flat = cut_fragment(np.full((8, 8, 3), 9, np.uint8), 0, 0, 0.0, False,
                        FragmentSpec(size=8, normalize="standardize"))
    assert np.all(flat == 128)


def test_dtd_fragments_split_by_photo(dtd_sample):
    kw = dict(path=dtd_sample, size=96, stride=48, angles=(0, 90), flips=True, out_size=24,
              normalize="standardize", test_fraction=0.25, seed=3)
    train, test = load("train", **kw), load("test", **kw)
    assert isinstance(train, ImageDataset)
    assert train.info.image_shape == (24, 24, 3)
    assert train.info.split_sizes == {"train": len(train), "test": len(test)}
    # overlapping fragments (stride < size) of one photo never sit on both sides
    assert not set(train.image_ids) & set(test.image_ids)
    assert len(train.image_ids) + len(test.image_ids) == 120
    assert np.array_equal(np.bincount(train.folder.image_labels[test.image_ids]), np.full(10, 3))
    assert train.fragments_per_image().sum() == len(train) == len(train.labels)
    assert train.labels.dtype == np.int32
    batch_idx = np.random.default_rng(0).integers(0, len(train), 40)
    batch = train.__getitems__(batch_idx)
    assert batch["image"].shape == (40, 24, 24, 3) and batch["image"].dtype == np.uint8
    for j in (0, 17, 39):
        info = train.fragment_info(batch_idx[j])
        assert info["label"] == batch["label"][j]
        assert info["image_id"] in set(train.image_ids)
        assert np.array_equal(train[batch_idx[j]]["image"], batch["image"][j])
    # deterministic: a second load (fresh cache) yields the same pixels
    again = load("train", **kw)
    assert np.array_equal(again.__getitems__(batch_idx)["image"], batch["image"])
    clone = pickle.loads(pickle.dumps(train))
    assert np.array_equal(clone.__getitems__(batch_idx[:5])["image"], batch["image"][:5])
    # fragment 0 at angle 0 is the photo's top-left crop, resized and standardised
    info = train.fragment_info(0)
    assert (info["y"], info["x"], info["angle"], info["flip"]) == (0, 0, 0.0, False)


def test_cache_stays_small(dtd_sample):
    ds = load("all", path=dtd_sample, size=128, stride=128, out_size=8, cache_images=3)
    ds.__getitems__(np.arange(0, len(ds), 7))
    assert len(ds._cache) == 3


@pytest.mark.parametrize("kw, match", [
    (dict(size=0), "size=0"),
    (dict(size=8, stride=-1), "stride=-1"),
    (dict(normalize="clahe"), "'clahe'"),
    (dict(angles=()), "angles"),
    (dict(angles=(0, 360)), "repeat"),
])
def test_bad_specs(kw, match):
    with pytest.raises(UserError, match=match):
        FragmentSpec(**kw)


def test_fragment_larger_than_every_photo(dtd_sample):
    with pytest.raises(UserError, match="size=2000"):
        load("train", path=dtd_sample, size=2000)


def test_unknown_option_is_a_user_error(dtd_sample):
    with pytest.raises(UserError, match="'rotation'"):
        load("train", path=dtd_sample, rotation=90)


def test_image_size_is_out_size(dtd_sample):
    ds = load("test", path=dtd_sample, size=200, image_size=20)
    assert ds.info.image_shape == (20, 20, 3) and ds[0]["image"].shape == (20, 20, 3)
    with pytest.raises(UserError, match="disagree"):
        load("test", path=dtd_sample, size=200, image_size=20, out_size=30)


def test_prepare_is_not_needed():
    from fedjax_grid.data.fragments import prepare
    with pytest.raises(UserError, match="lazily"):
        prepare(path="x")
