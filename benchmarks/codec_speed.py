"""Codec micro-benchmark: encode/decode time and bytes on the VGG-16 parameter tree.

Builds the variables of ``get_model('vgg16', 10, width=1.0, norm='batch', head='cifar')``
from shapes only (``jax.eval_shape`` of ``model.init``: no XLA compilation), fills
them with an update-like float32 tree (normal, scale 1e-3 per leaf), and prints a
markdown table per codec: median encode and decode time over ``--repeats`` runs
(numpy, one thread), payload bytes
(``payload_nbytes``), the ratio to float32 and the time the payload takes on the
nominal upload of the ``wifi`` (50 Mbit/s) and ``home`` (10 Mbit/s) presets.
``topk`` is timed from a zero residual (its steady state costs the same).

    python benchmarks/codec_speed.py
    python benchmarks/codec_speed.py --width 0.25 --repeats 5
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

CODECS = ["none", "bf16", "int8", "int8(block=0)", "topk(0.01)", "topk(0.01, values=bf16)",
          "topk(0.1)"]


def vgg16_tree(width: float, seed: int = 0) -> dict:
    import jax
    import jax.numpy as jnp
    from fedjax_grid.models import get_model
    model = get_model("vgg16", 10, width=width, norm="batch", head="cifar")
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0),
                                                "dropout": jax.random.PRNGKey(1)},
                                               jnp.zeros((1, 32, 32, 3)), train=False))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (rng.standard_normal(s.shape, np.float32) * 1e-3), shapes)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3, out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--codecs", default=";".join(CODECS), help="';'-separated codec specs")
    args = ap.parse_args(argv)
    from fedjax_grid.compression import (apply_broadcast, broadcast_payload, decode, flatten,
                                         make_codec, payload_nbytes, tree_nbytes_float32)
    from fedjax_grid.hazards.links import link_of

    tree = vgg16_tree(args.width)
    leaves = flatten(tree)[1]
    n = sum(x.size for x in leaves)
    f32 = tree_nbytes_float32(tree)
    wifi, home = link_of("wifi(spread=1)", 0, 0), link_of("home(spread=1)", 0, 0)
    specs = [s.strip() for s in args.codecs.split(";") if s.strip()]
    print(f"VGG-16 (CIFAR head, width {args.width}, BatchNorm): {n:,} values in {len(leaves)} leaves "
          f"({sum(x.size < 64 for x in leaves)} under 64 values, sent raw), float32 {f32 / 1e6:.1f} MB; "
          f"median of {args.repeats}; numpy {np.__version__}, {os.cpu_count()} CPUs (shared)\n")
    print("| codec | encode ms | decode ms | bytes | ratio vs float32 | upload s @ wifi 50 Mbit/s "
          "| upload s @ home 10 Mbit/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for spec in specs:
        codec = make_codec(spec)
        enc_ms, (payload, _) = timed(lambda c=codec: c.encode(tree, np.random.default_rng(0), None),
                                     args.repeats)
        dec_ms, _ = timed(lambda p=payload: decode(p), args.repeats)
        nb = payload_nbytes(payload)
        print(f"| `{spec}` | {enc_ms:.0f} | {dec_ms:.0f} | {nb:,} | {f32 / nb:.2f}x | "
              f"{wifi.upload_seconds(nb):.2f} | {home.upload_seconds(nb):.2f} |")

    print("\nBroadcast (coordinator side: delta, encode, reconstruction; worker: apply):\n")
    print("| broadcast | coordinator ms | worker ms | bytes | ratio vs float32 "
          "| download s @ wifi 200 Mbit/s |")
    print("|---|---:|---:|---:|---:|---:|")
    held = decode(make_codec("bf16").encode(tree, None, None)[0])
    new = tree
    for label, h, codec in [("full, bf16 (desktop holds nothing)", None, "none"),
                            ("delta, int8", held, "int8"), ("delta, topk(0.01)", held, "topk(0.01)")]:
        ms, (payload, _) = timed(lambda h=h, c=codec: broadcast_payload(new, h, c, np.random.default_rng(0)),
                                 args.repeats)
        worker_ms, _ = timed(lambda p=payload, h=h: apply_broadcast(p, h), args.repeats)
        nb = payload_nbytes(payload)
        print(f"| {label} | {ms:.0f} | {worker_ms:.0f} | {nb:,} | {f32 / nb:.2f}x "
              f"| {wifi.download_seconds(nb):.2f} |")


if __name__ == "__main__":
    main()
