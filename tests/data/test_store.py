"""store/archive: array_record round trip without TensorFlow, idempotent prepare, errors."""
import gzip
import io
import pickle
import tarfile
import zipfile

import numpy as np
import pytest

from fedjax_grid.data import archive, store
from fedjax_grid.errors import DataError, UserError


def _toy(n_train=12, n_test=5, shape=(6, 5, 3), seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n_train + n_test, *shape), dtype=np.uint8)
    labels = rng.integers(0, 3, n_train + n_test)
    calls = []

    def make():
        calls.append(1)
        return store.SourceData(
            splits={"train": store.SplitData(labels[:n_train], lambda: iter(images[:n_train])),
                    "test": store.SplitData(labels[n_train:], lambda: iter(images[n_train:]))},
            class_names=["a", "b", "c"], image_shape=shape)
    return images, labels, make, calls


@pytest.mark.parametrize("image_format", ["raw", "png"])
def test_round_trip_keeps_order_pixels_and_labels(tmp_path, image_format):
    images, labels, make, _ = _toy()
    vdir = store.write_prepared("toy", data_dir=tmp_path, make=make, fingerprint={"v": 1},
                                image_format=image_format)
    assert vdir == tmp_path / "toy" / store.STORE_VERSION
    assert list(vdir.glob("toy-train.array_record-*"))
    ds = store.open_prepared(vdir, "train")
    assert len(ds) == 12 and ds.info.split_sizes == {"train": 12, "test": 5}
    assert ds.info.class_names == ("a", "b", "c") and ds.info.image_shape == (6, 5, 3)
    batch = ds.__getitems__([11, 0, 4, 4])
    assert batch["image"].dtype == np.uint8 and batch["image"].shape == (4, 6, 5, 3)
    np.testing.assert_array_equal(batch["image"], images[[11, 0, 4, 4]])
    np.testing.assert_array_equal(batch["label"], labels[[11, 0, 4, 4]])
    assert batch["label"].dtype == np.int32
    one = ds[-1]
    np.testing.assert_array_equal(one["image"], images[11])
    assert one["label"] == labels[11] and isinstance(one["label"], int)
    np.testing.assert_array_equal(ds.labels, labels[:12])
    assert ds.labels.dtype == np.int32
    test = store.open_prepared(vdir, "test")
    np.testing.assert_array_equal(test.__getitems__(np.arange(5))["image"], images[12:])
    empty = ds.__getitems__([])
    assert empty["image"].shape == (0, 6, 5, 3) and empty["label"].shape == (0,)
    with pytest.raises(IndexError):
        ds[12]
    with pytest.raises(IndexError):
        ds.__getitems__([0, 12])


def test_dataset_pickles_by_reopening(tmp_path):
    images, _, make, _ = _toy()
    ds = store.open_prepared(store.write_prepared("toy", data_dir=tmp_path, make=make), "train")
    ds[0]  # opens the source
    copy = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(copy[3]["image"], images[3])


def test_prepare_is_idempotent_and_rebuilds_stale_or_half_written(tmp_path):
    images, _, make, calls = _toy()
    vdir = store.write_prepared("toy", data_dir=tmp_path, make=make, fingerprint={"file": "a"})
    store.write_prepared("toy", data_dir=tmp_path, make=make, fingerprint={"file": "a"})
    assert len(calls) == 1
    store.write_prepared("toy", data_dir=tmp_path, make=make, fingerprint={"file": "b"})
    assert len(calls) == 2
    (vdir / store.MARKER).unlink()  # as if the process died before the marker was written
    assert store.find_prepared("toy", tmp_path) is None
    with pytest.raises(DataError, match="not a complete prepared copy"):
        store.open_prepared(vdir, "train")
    store.write_prepared("toy", data_dir=tmp_path, make=make, fingerprint={"file": "b"})
    assert len(calls) == 3
    np.testing.assert_array_equal(store.open_prepared(vdir, "train")[0]["image"], images[0])


def test_bad_split_label_and_format(tmp_path):
    _, _, make, _ = _toy()
    vdir = store.write_prepared("toy", data_dir=tmp_path, make=make)
    with pytest.raises(UserError, match="validation"):
        store.open_prepared(vdir, "validation")
    with pytest.raises(UserError, match="image_format"):
        store.write_prepared("toy2", data_dir=tmp_path, make=make, image_format="jpeg")

    def bad_labels():
        return store.SourceData({"train": store.SplitData(np.array([0, 5]), lambda: iter(np.zeros((2, 2, 2, 1), np.uint8)))},
                                class_names=["a", "b"], image_shape=(2, 2, 1))
    with pytest.raises(DataError, match="labels span 0..5"):
        store.write_prepared("toy3", data_dir=tmp_path, make=bad_labels)


def test_catalogue_names_need_tensorflow(tmp_path):
    if store.tensorflow_available():
        pytest.skip("TensorFlow installed: catalogue names are exercised in test_catalogue_cifar10")
    from fedjax_grid.data import load_source
    with pytest.raises(UserError, match="needs TensorFlow"):
        load_source("tfds:cifar10", "train", data_dir=tmp_path)


# ---- archive access and checksums -------------------------------------------------

def _write_tar_gz(path, members: dict):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_archive_reads_tar_zip_and_folder_alike(tmp_path):
    members = {"root/a.txt": b"alpha", "root/sub/b.bin": bytes(range(10))}
    _write_tar_gz(tmp_path / "x.tar.gz", members)
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as z:
        for n, d in members.items():
            z.writestr(n, d)
    for n, d in members.items():
        (tmp_path / "folder" / n).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "folder" / n).write_bytes(d)
    for p in ("x.tar.gz", "x.zip", "folder"):
        arch = archive.open_archive(tmp_path / p, "a test archive")
        assert arch.names() == sorted(members)
        assert arch.find("b.bin") == "root/sub/b.bin"
        assert arch.read_many(["root/a.txt", "root/sub/b.bin"]) == members
        with pytest.raises(DataError, match="no 'missing.txt' inside; expected a test archive"):
            arch.find("missing.txt")


def test_truncated_tar_gz_is_a_one_line_data_error(tmp_path):
    good = tmp_path / "good.tar.gz"
    _write_tar_gz(good, {"d/x.bin": np.random.default_rng(0).bytes(200_000)})
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError) as e:
        archive.open_archive(bad, "x").read_many(["d/x.bin"])
    assert "bad.tar.gz" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="no such file"):
        archive.open_archive(tmp_path / "absent.zip", "x")
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match="junk.zip"):
        archive.open_archive(tmp_path / "junk.zip", "x")


def test_checksum_verification_and_local_download(tmp_path):
    f = tmp_path / "payload.tar.gz"
    f.write_bytes(gzip.compress(b"payload"))
    md5 = archive.file_digest(f, "md5")
    sha = archive.file_digest(f, "sha256")
    archive.verify_checksum(f, md5=md5, sha256=sha)
    with pytest.raises(DataError, match="md5 is .* expected 0+"):
        archive.verify_checksum(f, md5="0" * 32)
    # download() through a file:// address (no network): verified, then reused
    dest = archive.download(f.as_uri(), tmp_path / "dl" / "copy.tar.gz", sha256=sha)
    assert dest.read_bytes() == f.read_bytes()
    with pytest.raises(DataError, match="sha256"):
        archive.download(f.as_uri(), tmp_path / "dl2" / "copy.tar.gz", sha256="f" * 64)
    assert not list((tmp_path / "dl2").iterdir())  # the bad download is not kept
