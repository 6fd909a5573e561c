"""Random-access batched read speed of every prepared source.

    python benchmarks/data_reads.py [--batches 100] [--data-dir DIR] [--shared DIR]

For each source: prepare once (tfds array_record, timed, into a temporary
data dir unless --data-dir is given), then read ``--batches`` batches of 32
random indices with ``ds.__getitems__`` and print examples/s. Sources: digits
(in memory and array_record), the CIFAR-10 slice (raw uint8 and PNG features),
the Tiny-ImageNet slice, and texture fragments of the DTD slice when
``fedjax_grid.data.fragments`` exists (cut lazily from the photos, not prepared).
Slices come from ``shared_data_dir()`` ($FEDJAX_GRID_SHARED_DATA, else
../shared/data); missing ones are skipped.

Measured (``python benchmarks/run_all.py --only data_reads``, 2026-12-04, AVX2 machine,
``--batches 50``; the record: docs/RESULTS.md, "Random-access reads of every prepared
source"; run-to-run spread on a shared machine is large, e.g. digits in memory 2.2 M vs
4.0 M examples/s in an earlier hand run):

    source                                      N   image  prepare s  on disk  examples/s
    digits (memory)                          1437 32x32x3       0.0        -   2,203,341
    digits (array_record)                    1437 32x32x3       0.5  3.7 MiB      10,356
    cifar10 slice (raw)                      5085 32x32x3       1.0 17.3 MiB       9,443
    cifar10 slice (png)                      5085 32x32x3       2.4 14.0 MiB       3,585
    tiny_imagenet slice (raw)                5000 64x64x3       3.2 75.0 MiB       8,814
    texture_fragments (128px/64 -> 64px)     2539 64x64x3       0.0        -       1,392

Reads from array_record cost ~70-100 us per example, almost all tfds
``tf.train.Example`` parsing (protobuf), nearly independent of image size.
"""
from __future__ import annotations

import argparse
import importlib.util
import pathlib
import tempfile
import time

import numpy as np

from fedjax_grid.data import load_source, prepare_source, shared_data_dir

BATCH = 32


def _du(path: pathlib.Path | None) -> str:
    if path is None:
        return "-"
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{total / 2**20:.1f} MiB"


def read_speed(ds, batches: int, seed: int = 0) -> float:
    """Examples/s of ``batches`` random batches of BATCH indices (after 2 warm-up batches)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ds), (batches + 2, BATCH))
    for k in idx[:2]:
        ds.__getitems__(k)
    t = time.perf_counter()
    for k in idx[2:]:
        out = ds.__getitems__(k)
        assert out["image"].shape[0] == BATCH
    return batches * BATCH / (time.perf_counter() - t)


def cases(shared: pathlib.Path):
    """(label, source, load kwargs, prepare kwargs or None)."""
    yield "digits (memory)", "digits", {}, None
    yield "digits (array_record)", "digits", {"storage": "array_record"}, {}
    cifar = shared / "cifar-10-binary-sample.tar.gz"
    if cifar.exists():
        yield "cifar10 slice (raw)", "cifar10", {"path": cifar}, {"path": cifar}
        yield "cifar10 slice (png)", "cifar10", {"path": cifar, "image_format": "png"}, \
            {"path": cifar, "image_format": "png"}
    tiny = shared / "tiny-imagenet-200-sample.zip"
    if tiny.exists():
        yield "tiny_imagenet slice (raw)", "tiny_imagenet", {"path": tiny}, {"path": tiny}
    dtd = shared / "dtd-texture-sample.zip"
    if dtd.exists() and importlib.util.find_spec("fedjax_grid.data.fragments") is not None:
        yield "texture_fragments (128px/64 stride -> 64px)", "texture_fragments", \
            {"path": dtd, "size": 128, "stride": 64, "out_size": 64, "cache_images": 64}, None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--data-dir", type=pathlib.Path, default=None)
    ap.add_argument("--shared", type=pathlib.Path, default=shared_data_dir())
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or pathlib.Path(tmp)
        rows = []
        for label, name, load_kw, prep_kw in cases(args.shared):
            prep_s, vdir = 0.0, None
            if prep_kw is not None:
                t = time.perf_counter()
                vdir = prepare_source(name, data_dir=data_dir, **prep_kw)
                prep_s = time.perf_counter() - t
            ds = load_source(name, "train", data_dir=data_dir, **load_kw)
            speed = read_speed(ds, args.batches)
            rows.append((label, len(ds), "x".join(map(str, ds.info.image_shape)), prep_s, _du(vdir), speed))
        print(f"\nrandom-access reads, batch {BATCH}, {args.batches} batches (split 'train')")
        print(f"{'source':<44} {'N':>7} {'image':>9} {'prepare s':>10} {'on disk':>10} {'examples/s':>11}")
        for label, n, shape, prep_s, disk, speed in rows:
            print(f"{label:<44} {n:>7} {shape:>9} {prep_s:>10.1f} {disk:>10} {speed:>11,.0f}")


if __name__ == "__main__":
    main()
