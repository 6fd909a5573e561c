"""The ``textures`` source on the real DTD slice and on folders/zips written here."""
import pickle
import zipfile

import numpy as np
import pytest
from PIL import Image

from fedjax_grid.data.base import ImageDataset
from fedjax_grid.data.textures import TextureFolder, load, split_images
from fedjax_grid.errors import DataError, UserError


def _write_tree(root, classes=("b_stripes", "a_dots"), per_class=3, size=(40, 30)):
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        d = root / "images" / name
        d.mkdir(parents=True)
        for i in range(per_class):
            arr = np.full((size[1], size[0], 3), 40 * k + i, np.uint8)
            arr[0, 0] = rng.integers(0, 255, 3)
            Image.fromarray(arr).save(d / f"{name}_{i:04d}.png")
    (root / "README.txt").write_text("not an image")
    (root / "images" / ".hidden.png").write_bytes(b"")
    return root


def _zip_tree(root, zpath):
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(root.rglob("*")):
            z.write(p, p.relative_to(root.parent).as_posix())
    return zpath


def test_dtd_slice(dtd_sample):
    train = load("train", path=dtd_sample, image_size=48)
    test = load("test", path=dtd_sample, image_size=48)
    assert isinstance(train, ImageDataset)
    assert train.info.num_classes == 10 and train.info.class_names[0] == "banded"
    assert len(train) + len(test) == 120 and len(test) == 20
    assert train.info.split_sizes == {"train": 100, "test": 20}
    assert not set(train.image_ids) & set(test.image_ids)
    assert np.array_equal(np.bincount(test.labels), np.full(10, 2))
    batch = train.__getitems__([0, 5, 99])
    assert batch["image"].shape == (3, 48, 48, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int32
    # label comes from the class folder of the file
    for i in (0, 57, 99):
        cls = train.folder.files[train.image_ids[i]].split("/")[-2]
        assert train.info.class_names[train[i]["label"]] == cls
    assert batch["image"].std() > 5  # real pixels, not a blank
    sizes = train.folder.sizes()
    assert sizes.shape == (120, 2) and sizes.min() >= 300 and sizes.max() <= 640
    again = pickle.loads(pickle.dumps(train))
    assert np.array_equal(again[3]["image"], train[3]["image"])


def test_folder_and_zip_give_the_same_data(tmp_path):
    root = _write_tree(tmp_path / "tex")
    zpath = _zip_tree(root, tmp_path / "tex.zip")
    a = load("all", path=root, image_size=16)
    b = load("all", path=zpath, image_size=16)
    assert a.info.class_names == b.info.class_names == ("a_dots", "b_stripes")
    assert len(a) == len(b) == 6
    assert np.array_equal(a.labels, [0, 0, 0, 1, 1, 1])
    assert np.array_equal(a.__getitems__(range(6))["image"], b.__getitems__(range(6))["image"])
    # a_dots (class 0) files hold 40 + i, b_stripes (class 1) files hold i; the
    # random corner pixel is cut away by the center crop, so resized images are flat
    assert np.all(a[4]["image"] == 1) and np.all(a[0]["image"] == 40)
    img = TextureFolder(root).read(3)
    assert img.shape == (30, 40, 3) and img[5, 5, 0] == 0
    assert TextureFolder(root).size(0) == (30, 40)


def test_split_is_seeded_and_per_class():
    labels = np.repeat(np.arange(4), 10)
    test = split_images(labels, "test", test_fraction=0.3, seed=1)
    train = split_images(labels, "train", test_fraction=0.3, seed=1)
    assert np.array_equal(np.bincount(labels[test]), [3, 3, 3, 3])
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(40))
    assert np.array_equal(test, split_images(labels, "test", test_fraction=0.3, seed=1))
    assert not np.array_equal(test, split_images(labels, "test", test_fraction=0.3, seed=2))
    with pytest.raises(UserError, match="'validation'"):
        split_images(labels, "validation")


def test_corrupt_zip_names_the_file(tmp_path):
    bad = tmp_path / "dtd.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DataError, match="dtd.zip") as err:
        load("train", path=bad)
    assert "\n" not in str(err.value)


def test_corrupt_image_names_the_member(tmp_path):
    root = _write_tree(tmp_path / "tex")
    (root / "images" / "a_dots" / "a_dots_0001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    zpath = _zip_tree(root, tmp_path / "tex.zip")
    for path in (root, zpath):
        ds = load("all", path=path, image_size=8)
        with pytest.raises(DataError, match="a_dots_0001.png"):
            ds[1]
        with pytest.raises(DataError, match="a_dots_0001.png"):
            ds.folder.sizes()


def test_missing_or_empty(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        load("train", path=tmp_path / "nowhere")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        load("train", path=tmp_path / "empty")
    with pytest.raises(UserError, match="path="):
        load("train")


def test_unknown_option_is_a_user_error(tmp_path):
    root = _write_tree(tmp_path / "tex")
    with pytest.raises(UserError, match="'imagesize'"):
        load("train", path=root, imagesize=8)


def test_array_record_storage_matches_folder(tmp_path, dtd_sample):
    kw = dict(path=dtd_sample, image_size=24, test_fraction=0.25, seed=1)
    stored = load("test", data_dir=tmp_path / "prepared", storage="array_record", **kw)
    direct = load("test", **kw)
    assert len(stored) == len(direct) == 30
    assert stored.info.class_names == direct.info.class_names
    assert np.array_equal(stored.labels, direct.labels)
    idx = [0, 7, 29]
    a, b = stored.__getitems__(idx), direct.__getitems__(idx)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])
