"""bf16 vs f32 matmul on XLA:CPU at the shapes of the bf16 fast path (one thread).

The bound behind ``training.precision=bf16``: how much faster a bf16 x bf16 -> f32 dot
is than the f32 one, with and without the f32 -> bf16 casts of its operands. Process
CPU time, median of 5 calls (moves less than wall time with other jobs' load):

    PJRT_NPROC=1 python benchmarks/bf16_matmul.py

Shapes (M x K x N): (N*oh*ow, kh*kw*C) x (kh*kw*C, F) of VGG-16 convs on 8x8 and 4x4
maps and a 2x2 map's, batch 32, and a 1x1 conv of MobileNetV3-Small.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

SHAPES = [(2048, 2304, 256), (512, 4608, 512), (128, 4608, 512), (8192, 576, 64)]
_DIMS = (((1,), (0,)), ((), ()))


def _f32(a, b):
    return a @ b


def _bf16_with_casts(a, b):
    return lax.dot_general(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), _DIMS,
                           preferred_element_type=jnp.float32)


def _bf16(a, b):
    return lax.dot_general(a, b, _DIMS, preferred_element_type=jnp.float32)


def cpu_seconds(fn, args, calls: int = 5) -> float:
    """Median process CPU seconds of one call of jitted ``fn`` (after a warm-up call)."""
    fn(*args).block_until_ready()
    times = []
    for _ in range(calls):
        c0 = time.process_time()
        fn(*args).block_until_ready()
        times.append(time.process_time() - c0)
    return statistics.median(times)


def main() -> int:
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__}, PJRT_NPROC={os.environ.get('PJRT_NPROC')}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| M x K x N | f32 cpu ms | bf16 with f32->bf16 casts cpu ms | bf16 operands cpu ms "
          "| f32 / bf16 (with casts) | f32 / bf16 (operands) |")
    print("|---|---|---|---|---|---|")
    for m, k, n in SHAPES:
        a = jnp.asarray(rng.random((m, k)), jnp.float32)
        b = jnp.asarray(rng.random((k, n)), jnp.float32)
        f = cpu_seconds(jax.jit(_f32), (a, b))
        c = cpu_seconds(jax.jit(_bf16_with_casts), (a, b))
        p = cpu_seconds(jax.jit(_bf16), (a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)))
        print(f"| {m}x{k}x{n} | {1e3 * f:.1f} | {1e3 * c:.1f} | {1e3 * p:.1f} | {f / c:.2f}x "
              f"| {f / p:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
