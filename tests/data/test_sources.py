"""Sources on real files: the CIFAR-10 slice, official-format archives written here, digits, registry."""
import io
import pickle
import tarfile

import numpy as np
import pytest

from fedjax_grid.data import cifar, digits, list_sources, load_source, prepare_source
from fedjax_grid.data.base import ArrayDataset, ImageDataset
from fedjax_grid.errors import DataError, UserError


# ---- writers of small archives in the official formats -------------------------------

def _tar_gz(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _planes(images):
    """(N, 32, 32, 3) -> (N, 3072) in the official R, G, B plane order."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def _fake(n, classes, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, classes, n)


def write_cifar100_binary(path, n_train=30, n_test=10):
    (tr, trf), (te, tef) = _fake(n_train, 100, 1), _fake(n_test, 100, 2)
    coarse = lambda f: f // 5  # noqa: E731
    rec = lambda im, f: np.concatenate(  # noqa: E731
        [coarse(f)[:, None], f[:, None], _planes(im)], axis=1).astype(np.uint8).tobytes()
    _tar_gz(path, {
        "cifar-100-binary/train.bin": rec(tr, trf), "cifar-100-binary/test.bin": rec(te, tef),
        "cifar-100-binary/fine_label_names.txt": "\n".join(f"fine{i}" for i in range(100)).encode() + b"\n",
        "cifar-100-binary/coarse_label_names.txt": "\n".join(f"coarse{i}" for i in range(20)).encode() + b"\n"})
    return (tr, trf, coarse(trf)), (te, tef, coarse(tef))


def write_cifar_python(path, name, n_per_batch=8):
    """The python layout; pickles as the originals: protocol 2, bytes keys, numpy data."""
    dump = lambda obj: pickle.dumps(obj, protocol=2)  # noqa: E731
    out = {}
    if name == "cifar10":
        root = "cifar-10-batches-py/"
        batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for k, b in enumerate(batches):
            im, lab = _fake(n_per_batch, 10, 10 + k)
            out[root + b] = dump({b"batch_label": b"x", b"labels": [int(x) for x in lab],
                                  b"data": _planes(im), b"filenames": [b"f"] * n_per_batch})
        out[root + "batches.meta"] = dump({b"label_names": [f"c{i}".encode() for i in range(10)],
                                           b"num_vis": 3072})
    else:
        root = "cifar-100-python/"
        for k, b in enumerate(["train", "test"]):
            im, lab = _fake(n_per_batch, 100, 20 + k)
            out[root + b] = dump({b"fine_labels": [int(x) for x in lab],
                                  b"coarse_labels": [int(x) // 5 for x in lab], b"data": _planes(im)})
        out[root + "meta"] = dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                   b"coarse_label_names": [f"k{i}".encode() for i in range(20)]})
    _tar_gz(path, out)
    return {k: pickle.loads(v, encoding="bytes") for k, v in out.items()}


# ---- CIFAR-10: the real slice ---------------------------------------------------------

def test_cifar10_sample_counts_classes_and_pixels(cifar10_sample, tmp_path):
    train = load_source("cifar10", "train", path=cifar10_sample, data_dir=tmp_path)
    test = load_source("cifar10", "test", data_dir=tmp_path)  # reuses the prepared copy
    assert isinstance(train, ImageDataset)
    assert len(train) == 5085 and len(test) == 1017
    assert train.info.split_sizes == {"train": 5085, "test": 1017}
    assert train.info.class_names == ("airplane", "automobile", "bird", "cat", "deer", "dog",
                                      "frog", "horse", "ship", "truck")
    assert train.info.image_shape == (32, 32, 3) and train.info.num_classes == 10
    counts = np.bincount(train.labels, minlength=10)
    assert counts.sum() == 5085 and counts.min() > 400  # roughly balanced, all classes
    assert test.labels.min() >= 0 and test.labels.max() == 9
    # pixels and labels against the raw bytes of the official records
    with tarfile.open(cifar10_sample) as tar:
        batch3 = tar.extractfile("cifar-10-batches-bin/data_batch_3.bin").read()
        test_raw = tar.extractfile("cifar-10-batches-bin/test_batch.bin").read()
    rec = 3073
    k = 17  # record 17 of batch 3 is train example 2 * 1017 + 17
    r = np.frombuffer(batch3[k * rec:(k + 1) * rec], np.uint8)
    ex = train[2 * 1017 + k]
    assert ex["label"] == r[0]
    assert ex["image"][0, 0, 0] == r[1] and ex["image"][0, 1, 0] == r[2]  # R plane, row-major
    assert ex["image"][1, 0, 1] == r[1 + 1024 + 32]  # G plane, row 1
    np.testing.assert_array_equal(ex["image"], r[1:].reshape(3, 32, 32).transpose(1, 2, 0))
    last = np.frombuffer(test_raw[-rec:], np.uint8)
    np.testing.assert_array_equal(test[1016]["image"], last[1:].reshape(3, 32, 32).transpose(1, 2, 0))
    batch = train.__getitems__([2 * 1017 + k, 0])
    np.testing.assert_array_equal(batch["image"][0], ex["image"])


def test_cifar10_from_extracted_folder_matches_archive(cifar10_sample, tmp_path):
    with tarfile.open(cifar10_sample) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    splits, names, layout = cifar.read_cifar("cifar10", tmp_path / "x" / "cifar-10-batches-bin")
    assert layout == "binary" and names[0] == "airplane"
    ds = load_source("cifar10", "test", path=tmp_path / "x", data_dir=tmp_path / "d")
    np.testing.assert_array_equal(ds.__getitems__(np.arange(1017))["image"], splits["test"][0])
    np.testing.assert_array_equal(ds.labels, splits["test"][1])


def test_wrong_size_bin_is_a_data_error(cifar10_sample, tmp_path):
    with tarfile.open(cifar10_sample) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    members["cifar-10-batches-bin/data_batch_2.bin"] += b"\0" * 10
    bad = _tar_gz(tmp_path / "cifar-10-binary.tar.gz", members)
    with pytest.raises(DataError, match=r"data_batch_2\.bin: 3125251 bytes is not a whole number of 3073-byte"):
        load_source("cifar10", "train", path=bad, data_dir=tmp_path / "d")
    assert not (tmp_path / "d" / "cifar10").exists() or not list((tmp_path / "d" / "cifar10").rglob("*.json"))


def test_truncated_cifar_archive_names_the_file(cifar10_sample, tmp_path):
    cut = tmp_path / "cifar-10-binary.tar.gz"
    cut.write_bytes(cifar10_sample.read_bytes()[:3_000_000])
    with pytest.raises(DataError, match="cifar-10-binary.tar.gz: truncated or corrupt tar"):
        cifar.prepare("cifar10", path=cut, data_dir=tmp_path / "d")


def test_missing_cifar_without_download_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="pass path= .* or download=True"):
        load_source("cifar10", "train", data_dir=tmp_path)


# ---- CIFAR-100 binary, python layouts (written here in the official formats) ----------

def test_cifar100_binary_fine_and_coarse(tmp_path):
    (tr, trf, trc), (te, tef, tec) = write_cifar100_binary(tmp_path / "cifar-100-binary.tar.gz")
    fine = load_source("cifar100", "train", path=tmp_path / "cifar-100-binary.tar.gz", data_dir=tmp_path / "d")
    assert fine.info.num_classes == 100 and fine.info.class_names[7] == "fine7"
    np.testing.assert_array_equal(fine.labels, trf)
    np.testing.assert_array_equal(fine.__getitems__(np.arange(30))["image"], tr)
    coarse = load_source("cifar100", "test", path=tmp_path / "cifar-100-binary.tar.gz",
                         data_dir=tmp_path / "d", label_mode="coarse")
    assert coarse.info.num_classes == 20 and coarse.info.class_names[3] == "coarse3"
    np.testing.assert_array_equal(coarse.labels, tec)
    np.testing.assert_array_equal(coarse[9]["image"], te[9])
    with pytest.raises(UserError, match="label_mode='medium'"):
        load_source("cifar100", "test", data_dir=tmp_path / "d", label_mode="medium")


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_python_layout(tmp_path, name):
    fname = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
    pickles = write_cifar_python(tmp_path / fname, name)
    splits, class_names, layout = cifar.read_cifar(name, tmp_path / fname)
    assert layout == "python"
    if name == "cifar10":
        first = pickles["cifar-10-batches-py/data_batch_1"]
        test_d = pickles["cifar-10-batches-py/test_batch"]
        assert len(splits["train"][0]) == 40 and class_names[2] == "c2"
        np.testing.assert_array_equal(splits["train"][1][:8], first[b"labels"])
        label_key = b"labels"
    else:
        first = pickles["cifar-100-python/train"]
        test_d = pickles["cifar-100-python/test"]
        assert class_names[99] == "f99"
        label_key = b"fine_labels"
    raw = first[b"data"][3]
    np.testing.assert_array_equal(splits["train"][0][3], raw.reshape(3, 32, 32).transpose(1, 2, 0))
    ds = load_source(name, "test", path=tmp_path / fname, data_dir=tmp_path / "d")
    np.testing.assert_array_equal(ds.labels, test_d[label_key])
    np.testing.assert_array_equal(ds[5]["image"], test_d[b"data"][5].reshape(3, 32, 32).transpose(1, 2, 0))


def test_restricted_unpickler_refuses_arbitrary_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))
    with pytest.raises(DataError, match="global 'posix.system' is not allowed|global 'os.system'"):
        cifar.unpickle(pickle.dumps({b"data": Evil()}, protocol=2), "evil")
    # numpy arrays (the official content) are fine
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    out = cifar.unpickle(pickle.dumps({b"data": arr}, protocol=2), "ok")
    np.testing.assert_array_equal(out["data"], arr)


# ---- digits -------------------------------------------------------------------------

def test_digits_default_split_shape_and_values():
    train, test = load_source("digits", "train"), load_source("digits", "test")
    assert isinstance(train, ArrayDataset)
    assert len(train) == 1437 and len(test) == 360 and len(train) + len(test) == 1797
    assert train.info.image_shape == (32, 32, 3) and train.info.class_names[9] == "9"
    assert np.bincount(test.labels).min() >= 35  # stratified: ~36 per class
    img = train[0]["image"]
    assert img.dtype == np.uint8 and img.max() > 150 and img.min() == 0
    np.testing.assert_array_equal(img[..., 0], img[..., 2])  # gray copied to 3 channels
    np.testing.assert_array_equal(load_source("digits", "train").labels, train.labels)  # deterministic


def test_digits_nearest_upsampling_repeats_source_pixels():
    from sklearn.datasets import load_digits
    ds = load_source("digits", "test", image_size=16, channels=1, interpolation="nearest")
    assert ds.info.image_shape == (16, 16, 1)
    raw = load_digits().images[digits.split_indices()["test"][0]]
    expected = np.rint(raw * 255 / 16).astype(np.uint8).repeat(2, 0).repeat(2, 1)
    np.testing.assert_array_equal(ds[0]["image"][..., 0], expected)
    with pytest.raises(UserError, match="channels=2"):
        load_source("digits", "train", channels=2)


def test_digits_prepared_equals_in_memory(tmp_path):
    vdir = prepare_source("digits", data_dir=tmp_path, image_size=24)
    assert vdir.name == "1.0.0" and vdir.parent.name == "s24_c3_bilinear"
    stored = load_source("digits", "test", data_dir=tmp_path, image_size=24, storage="array_record")
    mem = load_source("digits", "test", image_size=24)
    idx = [0, 359, 17]
    np.testing.assert_array_equal(stored.__getitems__(idx)["image"], mem.__getitems__(idx)["image"])
    np.testing.assert_array_equal(stored.labels, mem.labels)


# ---- registry -----------------------------------------------------------------------

def test_registry_names_and_errors():
    names = list_sources()
    for n in ("digits", "cifar10", "cifar100", "tiny_imagenet", "textures", "texture_fragments"):
        assert n in names
    with pytest.raises(UserError, match="unknown data source 'mnist'; allowed: .*digits.*"
                                        "or 'tfds:<catalogue name>'"):
        load_source("mnist", "train")
    with pytest.raises(UserError, match="split='val' is not one of train, test"):
        load_source("digits", "val")


def test_sources_register_themselves_with_their_options():
    """Each source module registers its loader, preparer and typed options; a source
    registered later (one new module) is listed and loaded like the others."""
    import subprocess
    import sys
    from fedjax_grid.data import base
    from fedjax_grid.data.registry import SOURCES, Source
    from fedjax_grid.registry import Params
    assert SOURCES.get("textures").obj.load.__module__ == "fedjax_grid.data.textures"
    assert SOURCES.get("texture_fragments").obj.load.__module__ == "fedjax_grid.data.fragments"
    assert set(SOURCES.schema("cifar100")["properties"]) >= {"label_mode", "download"}
    # importing fedjax_grid.data does not import the source modules (they load on first read)
    code = ("import sys, fedjax_grid.data as d; assert 'fedjax_grid.data.cifar' not in sys.modules; "
            "d.list_sources(); assert 'fedjax_grid.data.cifar' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)

    class LaterOptions(Params):
        n: int = 3

    def load(split, *, path=None, data_dir=None, n=3):
        return base.ArrayDataset(np.zeros((n, 8, 8, 3), np.uint8), np.zeros(n, np.int64),
                                 base.DatasetInfo("later", 1, ("zero",), (8, 8, 3), {}))

    SOURCES.register("later", LaterOptions)(Source(load))
    try:
        assert "later" in list_sources()
        assert len(load_source("later", "train", n=5)) == 5
        with pytest.raises(UserError, match="source 'later' cannot be prepared"):
            prepare_source("later")
    finally:
        SOURCES.unregister("later")
    assert "later" not in list_sources()
