"""Train-step throughput of the models, fast path vs stock ``nn.Conv``, on this machine.

Prints a Markdown table: images/s of a jitted SGD-momentum train step (softmax
cross-entropy, ``batch_stats`` mutable) at batch 32 for each model and path, the
model's training FLOPs per image, the achieved GFLOP/s and its fraction of this
machine's measured float32 matmul peak (a jitted ``jnp.dot`` of two N x N matrices).

Training FLOPs per image = 3 x the forward conv + dense FLOPs (2 x multiply-adds,
padded kernel taps included), counted from the stock-path forward jaxpr, so both
paths are credited with the same useful work.

    python benchmarks/throughput.py                       # all models, both paths
    python benchmarks/throughput.py --models vgg16 --steps 3
    python benchmarks/throughput.py --models vgg16 --paths fast --patches-max 4,8,16,32

``--patches-max`` times the fast path once per bound of ``fast_paths.PATCHES_MAX_SPATIAL``
(the largest map side whose 3x3 convs run as patches + matmul; rows ``fast<=N``): how the
bound was chosen, re-checkable on any CPU.

The CPU may be shared with other processes: timings are the median over steps.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import jax.extend
import optax

from fedjax_grid.models import fast_paths, get_model

#: name -> (registry name, input side, classes, kw)
MODELS = {
    "vgg16": ("vgg16", 32, 10, {}),
    "mobilenet_v3_small": ("mobilenet_v3_small", 64, 200, {}),
    "mobilenet_v3_large": ("mobilenet_v3_large", 64, 200, {}),
}


def matmul_peak_gflops(n: int = 2048, reps: int = 5) -> float:
    """Best-of-``reps`` float32 GFLOP/s of a jitted (n x n) @ (n x n)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def _jaxpr_matmul_flops(jaxpr) -> float:
    """2 x multiply-adds of every conv and dot in a jaxpr (nested jaxprs included).

    Convs count every kernel tap, padded ones too (the usual convention: VGG-16 on
    32x32 = 0.31 GMAC forward).
    """
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            lhs, rhs = (v.aval for v in eqn.invars[:2])
            dn = eqn.params["dimension_numbers"]
            out = eqn.outvars[0].aval
            k_spatial = [rhs.shape[d] for d in dn.rhs_spec[2:]]
            cin_per_group = rhs.shape[dn.rhs_spec[1]]
            total += 2.0 * np.prod(out.shape) * np.prod(k_spatial) * cin_per_group
        elif name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval
            out = eqn.outvars[0].aval
            total += 2.0 * np.prod(out.shape) * np.prod([lhs.shape[d] for d in contract])
        for param in eqn.params.values():
            for sub in (param if isinstance(param, (list, tuple)) else [param]):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    total += _jaxpr_matmul_flops(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    total += _jaxpr_matmul_flops(sub)
    return total


def forward_flops_per_image(name: str, hw: int, classes: int, kw: dict) -> float:
    """Conv + dense FLOPs (2 x MACs) of one stock-path eval forward pass per image."""
    model = get_model(name, classes, fast_path=False, **kw)
    x = jax.ShapeDtypeStruct((1, hw, hw, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    closed = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    return _jaxpr_matmul_flops(closed.jaxpr)


def make_train_step(model, tx):
    """Jitted (params, batch_stats, opt_state, x, y, rng) -> same + loss."""
    def loss_fn(params, batch_stats, x, y, rng):
        variables = {"params": params}
        if batch_stats:
            variables["batch_stats"] = batch_stats
        logits, updates = model.apply(variables, x, train=True, rngs={"dropout": rng},
                                      mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, updates.get("batch_stats", batch_stats)

    def step(params, batch_stats, opt_state, x, y, rng):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch_stats, x, y, rng)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    return jax.jit(step, donate_argnums=(0, 1, 2))


def time_train_step(name: str, hw: int, classes: int, kw: dict, fast: bool,
                    batch: int, steps: int, warmup: int = 2) -> tuple[float, float]:
    """(median seconds per step, compile seconds) of the train step."""
    model = get_model(name, classes, fast_path=fast, **kw)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, hw, hw, 3)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, classes, size=batch).astype(np.int32))
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x[:1])
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    tx = optax.sgd(0.01, momentum=0.9)
    opt_state = tx.init(params)
    step = make_train_step(model, tx)
    key = jax.random.key(1)
    t0 = time.perf_counter()
    params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, x, y, key)
    loss.block_until_ready()
    compile_s = time.perf_counter() - t0
    for _ in range(warmup - 1):
        params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, x, y, key)
    loss.block_until_ready()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, x, y, key)
        loss.block_until_ready()
        times.append(time.perf_counter() - t0)
    if not np.isfinite(float(loss)):
        raise RuntimeError(f"{name}: non-finite loss {float(loss)}")
    return statistics.median(times), compile_s


def _refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model/path")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--paths", default="fast,stock", help="fast,stock or one of them")
    parser.add_argument("--patches-max", default=None, metavar="N[,N...]", help=(
        "time the fast path at each of these bounds of fast_paths.PATCHES_MAX_SPATIAL "
        f"(default: only {fast_paths.PATCHES_MAX_SPATIAL})"))
    args = parser.parse_args(argv)
    try:
        bounds = ([int(b) for b in args.patches_max.split(",") if b.strip()]
                  if args.patches_max else [fast_paths.PATCHES_MAX_SPATIAL])
    except ValueError:
        bounds = []
    if not bounds or min(bounds) < 1:
        return _refuse(f"--patches-max {args.patches_max!r} is invalid: comma-separated "
                       "integers >= 1")
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in names if m not in MODELS]
    if bad or not names or args.steps < 1 or args.batch < 1:
        return _refuse(f"--models {args.models!r} / --steps {args.steps} / --batch {args.batch} "
                       f"is invalid: models among {', '.join(MODELS)}, steps and batch >= 1")
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    bad = [p for p in paths if p not in ("fast", "stock")]
    if bad or not paths:
        return _refuse(f"--paths {args.paths!r} is invalid: fast, stock or both, comma-separated")
    default = fast_paths.PATCHES_MAX_SPATIAL
    if args.patches_max:  # one fast row per bound, then stock
        paths = [f"fast<={b}" for b in bounds if "fast" in paths] + [p for p in paths
                                                                     if p == "stock"]

    peak = matmul_peak_gflops()
    print(f"backend={jax.default_backend()} devices={jax.devices()} "
          f"matmul peak (f32 2048^3 jnp.dot) = {peak:.1f} GFLOP/s", flush=True)
    print()
    print("| model | input | classes | path | images/s | s/step | compile s "
          "| train GFLOP/img | GFLOP/s | % matmul peak | fast/stock |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m in names:
        name, hw, classes, kw = MODELS[m]
        train_flops = 3.0 * forward_flops_per_image(name, hw, classes, kw)
        ips = {}
        for path in paths:
            fast_paths.PATCHES_MAX_SPATIAL = (int(path.split("<=")[1]) if "<=" in path
                                              else default)
            try:
                sec, comp = time_train_step(name, hw, classes, kw, path.startswith("fast"),
                                            args.batch, args.steps)
            finally:
                fast_paths.PATCHES_MAX_SPATIAL = default
            ips[path] = args.batch / sec
            gflops = ips[path] * train_flops / 1e9
            ref = "fast" if "fast" in ips else f"fast<={default}"
            ratio = (f"{ips[ref] / ips['stock']:.2f}x"
                     if path == "stock" and ref in ips else "")
            print(f"| {m} | {hw}x{hw} | {classes} | {path} | {ips[path]:.1f} | {sec:.3f} "
                  f"| {comp:.1f} | {train_flops / 1e9:.3f} | {gflops:.1f} "
                  f"| {100 * gflops / peak:.1f}% | {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
