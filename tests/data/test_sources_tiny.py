"""Tiny-ImageNet on the real slice (prepared once per session) and broken archives."""
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from fedjax_grid.data import load_source, shared_data_dir, tiny_imagenet
from fedjax_grid.errors import DataError


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory):
    """(zip path, data_dir) with the real sample prepared once for the session."""
    path = shared_data_dir() / "tiny-imagenet-200-sample.zip"
    if not path.exists():
        pytest.skip(f"{path} not present (real data slices live in ../shared/data)")
    data_dir = tmp_path_factory.mktemp("tiny_data")
    tiny_imagenet.prepare(path=path, data_dir=data_dir)
    return path, data_dir


def test_tiny_imagenet_sample_counts_names_and_pixels(tiny_prepared):
    path, data_dir = tiny_prepared
    train = load_source("tiny_imagenet", "train", path=path, data_dir=data_dir)
    test = load_source("tiny_imagenet", "test", data_dir=data_dir)
    assert len(train) == 5000 and len(test) == 2000
    assert train.info.num_classes == 200 and train.info.image_shape == (64, 64, 3)
    assert train.info.split_sizes == {"train": 5000, "test": 2000}
    np.testing.assert_array_equal(np.bincount(train.labels, minlength=200), 25)
    np.testing.assert_array_equal(np.bincount(test.labels, minlength=200), 10)
    with zipfile.ZipFile(path) as z:
        wnids = z.read("tiny-imagenet-200/wnids.txt").decode().split()
        words = dict(line.split("\t", 1) for line in z.read("tiny-imagenet-200/words.txt").decode().splitlines())
        ann = [line.split("\t") for line in z.read("tiny-imagenet-200/val/val_annotations.txt").decode().splitlines()]
        # class names: first synonym of words.txt, in wnids.txt order
        assert train.info.class_names[0] == words[wnids[0]].split(",")[0].strip()
        # first training example: class 0, lowest-numbered file of that class
        members = sorted((n for n in z.namelist() if n.startswith(f"tiny-imagenet-200/train/{wnids[0]}/images/")
                          and n.endswith(".JPEG")),
                         key=lambda n: int(n.rsplit("_", 1)[1].split(".")[0]))
        expected = np.asarray(Image.open(io.BytesIO(z.read(members[0]))).convert("RGB"))
        np.testing.assert_array_equal(train[0]["image"], expected)
        assert train[0]["label"] == 0
        # a validation image and its annotated label
        fname, wnid = ann[0][0], ann[0][1]
        order = sorted(ann, key=lambda a: int(a[0].split("_")[1].split(".")[0]))
        i = [a[0] for a in order].index(fname)
        expected = np.asarray(Image.open(io.BytesIO(z.read(f"tiny-imagenet-200/val/images/{fname}"))).convert("RGB"))
    got = test.__getitems__([i, 0])
    np.testing.assert_array_equal(got["image"][0], expected)
    assert got["label"][0] == wnids.index(wnid)
    assert tiny_imagenet.wnids_of(tiny_imagenet.prepare(data_dir=data_dir)) == wnids


def _mini_zip(path, *, with_wnids=True, bad_jpeg=False, gray=False):
    rng = np.random.default_rng(0)

    def jpeg(mode="RGB"):
        buf = io.BytesIO()
        shape = (64, 64, 3) if mode == "RGB" else (64, 64)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, "JPEG")
        return buf.getvalue()

    r = "tiny-imagenet-200/"
    with zipfile.ZipFile(path, "w") as z:
        if with_wnids:
            z.writestr(r + "wnids.txt", "n1\nn2\n")
        z.writestr(r + "words.txt", "n1\tone, uno\nn2\ttwo\nn3\tthree\n")
        for w in ("n1", "n2"):
            for k in range(3):
                z.writestr(f"{r}train/{w}/images/{w}_{k}.JPEG", jpeg("L" if gray and k == 0 else "RGB"))
        z.writestr(r + "val/images/val_0.JPEG", b"not a jpeg" if bad_jpeg else jpeg())
        z.writestr(r + "val/images/val_1.JPEG", jpeg())
        z.writestr(r + "val/val_annotations.txt", "val_0.JPEG\tn2\t0\t0\t10\t10\nval_1.JPEG\tn1\t0\t0\t5\t5\n")
    return path


def test_tiny_imagenet_grayscale_official_style_zip(tmp_path):
    path = _mini_zip(tmp_path / "tiny-imagenet-200.zip", gray=True)
    ds = load_source("tiny_imagenet", "train", path=path, data_dir=tmp_path / "d")
    assert ds.info.class_names == ("one", "two") and len(ds) == 6
    assert ds[0]["image"].shape == (64, 64, 3)
    np.testing.assert_array_equal(ds[0]["image"][..., 0], ds[0]["image"][..., 1])  # gray -> RGB
    np.testing.assert_array_equal(ds.labels, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(load_source("tiny_imagenet", "test", data_dir=tmp_path / "d").labels, [1, 0])


def test_tiny_imagenet_zip_without_wnids_is_a_data_error(tmp_path):
    path = _mini_zip(tmp_path / "tiny-imagenet-200.zip", with_wnids=False)
    with pytest.raises(DataError, match=r"tiny-imagenet-200\.zip: no 'wnids.txt' inside; expected the official"):
        load_source("tiny_imagenet", "train", path=path, data_dir=tmp_path / "d")


def test_tiny_imagenet_bad_jpeg_names_the_member(tmp_path):
    path = _mini_zip(tmp_path / "tiny-imagenet-200.zip", bad_jpeg=True)
    with pytest.raises(DataError, match=r"val/images/val_0\.JPEG: not a readable JPEG"):
        tiny_imagenet.prepare(path=path, data_dir=tmp_path / "d")
    assert tiny_imagenet.store.find_prepared("tiny_imagenet", tmp_path / "d") is None
