"""Texture-fragment benchmark: random-access read speed and indexing memory.

    python benchmarks/fragments.py [--dtd ../shared/data/dtd-texture-sample.zip]

1. fragments/s for random-access batched reads (``__getitems__`` of 256 random
   indices) on the real DTD slice, with a small photo cache (cold: most photos
   decoded per batch) and a cache holding every photo (warm);
2. peak memory (tracemalloc, and the RSS delta) while indexing >= 1 M fragments of
   654 synthetic photos of 2272x1074 (the study's photos; no image is decoded),
   including the int32 label array. Target: < 200 MB.

Measured (``python benchmarks/run_all.py --only fragments``, 2026-12-04, AVX2 machine;
the record: docs/RESULTS.md, "Texture fragments: read speed and index memory"):

    index: 1,088,256 fragments (1664 per photo, stride 64): 28.6 ms,
           tracemalloc peak 5.2 MB, RSS delta 10.4 MB              [target < 200 MB]
    index: 4,353,024 fragments (6656 per photo, stride 32): 6.1 ms,
           tracemalloc peak 17.0 MB, RSS delta 16.6 MB
    read: DTD slice, 24,632 fragments (128 px, stride 64, 4 rotations x flip -> 64 px,
          standardize), random batches of 256:
          cold (cache 8 photos, ~90 JPEG decodes per batch): 554 fragments/s
          warm (cache holds every photo):                 1,873 fragments/s

(The script prints the exact numbers of the run; see the end of its output.)
"""
from __future__ import annotations

import argparse
import os
import pathlib
import resource
import time
import tracemalloc

import numpy as np

from fedjax_grid.data.fragments import FragmentIndex, FragmentSpec, load
from fedjax_grid.data.paths import shared_data_dir

DEFAULT_DTD = shared_data_dir() / "dtd-texture-sample.zip"


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_speed(path, *, batches: int, batch_size: int, cache_images: int) -> tuple[int, float]:
    """(dataset length, fragments/s) of random batched reads."""
    ds = load("all", path=path, size=128, stride=64, angles=(0, 90, 180, 270), flips=True,
              normalize="standardize", out_size=64, cache_images=cache_images)
    rng = np.random.default_rng(0)
    if cache_images >= len(ds.image_ids):  # warm up: decode every photo once
        for i in ds.image_ids:
            ds.photo(int(i))
    t0 = time.perf_counter()
    for _ in range(batches):
        batch = ds.__getitems__(rng.integers(0, len(ds), batch_size))
        assert batch["image"].shape == (batch_size, 64, 64, 3)
    return len(ds), batches * batch_size / (time.perf_counter() - t0)


def index_memory(stride: int) -> dict:
    """Build the index (and labels) of 654 synthetic 2272x1074 photos under tracemalloc."""
    sizes = np.tile(np.array([1074, 2272], np.int64), (654, 1))
    image_labels = np.arange(654, dtype=np.int32) % 47
    spec = FragmentSpec(size=256, stride=stride, angles=(0, 90, 180, 270))
    rss0 = _rss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    index = FragmentIndex(sizes, spec)
    labels = index.labels(image_labels)
    loc = index.locate(np.random.default_rng(0).integers(0, len(index), 4096))
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(labels) == len(index) and loc["image"].max() < 654
    return {"fragments": len(index), "per_image": int(index.fragments_per_image()[0]),
            "seconds": seconds, "peak_mb": peak / 2**20, "rss_delta_mb": _rss_mb() - rss0}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtd", default=str(DEFAULT_DTD))
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args(argv)

    for stride in (64, 32):
        r = index_memory(stride)
        ok = "OK" if r["peak_mb"] < 200 else "OVER TARGET"
        print(f"index: {r['fragments']:,} fragments ({r['per_image']} per photo, stride {stride}): "
              f"{r['seconds'] * 1e3:.1f} ms, tracemalloc peak {r['peak_mb']:.1f} MB, "
              f"RSS delta {r['rss_delta_mb']:.1f} MB  [{ok}: target < 200 MB]")

    if not pathlib.Path(args.dtd).exists():
        print(f"read speed: skipped, {args.dtd} not present")
        return
    for label, cache in (("cold, cache 8 photos", 8), ("warm, cache all photos", 1000)):
        n, rate = read_speed(args.dtd, batches=args.batches, batch_size=args.batch_size,
                             cache_images=cache)
        print(f"read: DTD slice, {n:,} fragments (128 px, stride 64, 4 rot x flip -> 64 px, "
              f"standardize), random batches of {args.batch_size}, {label}: {rate:,.0f} fragments/s")


if __name__ == "__main__":
    main()
