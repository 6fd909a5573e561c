"""How far bf16 moves a training gradient from float32's, on each bf16 implementation.

    python benchmarks/bf16_gradients.py                    # vgg16_w025, mobilenet_v3_small
    python benchmarks/bf16_gradients.py --models vgg16_w025 --batches 2

``training.precision: bf16`` has two implementations (``fedjax_grid/models/precision.py``):
on XLA:CPU's fast path the matmuls round their operands to bf16 and accumulate in f32
(activations stay f32); on Flax's stock path every layer computes in bf16. This script
takes one model's initial weights (``benchmarks/precision.py``'s models, seed 0) and
``--batches`` batches of 32 random standardised images with random labels, and computes the
gradient of the mean cross-entropy (BatchNorm in training mode, the same dropout masks)
four ways: f32 on the fast path (the reference), f32 on the stock path (the reference's
own rounding noise), bf16 on the fast path, and bf16 on the stock path. Per way it prints, as median (min-max) over the
batches, the relative error ``||g - g_ref|| / ||g_ref||`` and the cosine of ``g`` with
``g_ref``, over every parameter but the biases of convolutions that a BatchNorm follows
(their exact gradient is zero, so their relative error is noise over nothing), and the
parameter with the largest relative error among those whose reference gradient is at least
1e-3 of the largest parameter's. Exit status 2 with one line on a bad argument.

What it answers: whether one implementation's bf16 training is further from f32 than the
other's per step (docs/RESULTS.md, "Accuracy in bf16 vs f32": the two differ in accuracy
by less than the seed-to-seed spread).
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

#: the ways: label -> (precision, fast_path)
WAYS = {"f32, fast path (reference)": ("f32", True), "f32, stock path": ("f32", False),
        "bf16, fast path": ("bf16", True), "bf16, stock path": ("bf16", False)}


def compared_leaves(tree) -> dict:
    """``{path: array}`` of a gradient pytree without the biases of BatchNorm-followed
    convolutions (leaves named ``.../conv*/bias`` in a model with BatchNorm layers)."""
    import jax
    leaves = {jax.tree_util.keystr(k): np.asarray(v, np.float64)
              for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
    has_bn = any("['bn" in k for k in leaves)
    return {k: v for k, v in leaves.items()
            if not (has_bn and "['conv" in k and k.endswith("['bias']"))}


def compare(ref: dict, other: dict) -> tuple[float, float, str, float]:
    """(relative error, cosine, worst leaf, its relative error) of ``other`` against ``ref``
    (two ``compared_leaves`` dicts with the same keys)."""
    if set(ref) != set(other):
        raise ValueError(f"gradients with different parameters: {sorted(set(ref) ^ set(other))[:3]}")
    diff2 = sum(float(np.sum((ref[k] - other[k]) ** 2)) for k in ref)
    ref2 = sum(float(np.sum(ref[k] ** 2)) for k in ref)
    oth2 = sum(float(np.sum(other[k] ** 2)) for k in ref)
    dot = sum(float(np.sum(ref[k] * other[k])) for k in ref)
    norms = {k: float(np.linalg.norm(ref[k])) for k in ref}
    top = max(norms.values())
    # the worst among leaves with a gradient to speak of (>= 1e-3 of the largest leaf's):
    # a leaf whose exact gradient is zero (e.g. a BatchNorm shift that the next BatchNorm
    # cancels) has a relative error of noise over nothing
    per = {k: float(np.linalg.norm(ref[k] - other[k]) / max(norms[k], 1e-30))
           for k in ref if norms[k] >= 1e-3 * top}
    worst = max(per, key=per.get)
    return ((diff2 / ref2) ** 0.5, dot / max((ref2 * oth2) ** 0.5, 1e-300), worst, per[worst])


def gradients(model_name: str, batches: int) -> dict:
    """way -> list over batches of ``compared_leaves`` gradients (see the module doc)."""
    import jax
    import jax.numpy as jnp
    import optax

    from fedjax_grid.models import get_model
    from fedjax_grid.models.precision import with_precision
    from fedjax_grid.training import init_variables
    from precision import MODELS

    name, hw, classes, kw = MODELS[model_name]
    variables = init_variables(get_model(name, classes, **kw), (hw, hw, 3), 0)
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    rng = np.random.default_rng(0)
    data = [(rng.normal(size=(32, hw, hw, 3)).astype(np.float32),
             rng.integers(0, classes, 32).astype(np.int32)) for _ in range(batches)]
    out = {}
    for way, (precision, fast) in WAYS.items():
        model = with_precision(get_model(name, classes, **dict(kw, fast_path=fast)), precision)

        def loss(p, x, y, model=model):
            logits, _ = model.apply({"params": p, **rest}, x, train=True,
                                    rngs={"dropout": jax.random.PRNGKey(0)},  # same masks
                                    mutable=list(rest) or False)
            return optax.softmax_cross_entropy_with_integer_labels(
                logits.astype(jnp.float32), y).mean()
        grad = jax.jit(jax.grad(loss))
        out[way] = [compared_leaves(grad(params, x, y)) for x, y in data]
    return out


def table(results: dict) -> str:
    """Markdown table: model -> way -> gradients over batches (``gradients``' result)."""
    lines = ["| model | way | relative error to f32 (fast path), median (min-max) | cosine, "
             "median (min-max) | largest per-parameter relative error (median batch) |",
             "|---|---|---|---|---|"]
    ref_way = next(iter(WAYS))
    for model, ways in results.items():
        for way, grads in ways.items():
            if way == ref_way:
                continue
            rows = [compare(r, g) for r, g in zip(ways[ref_way], grads)]
            err, cos = [r[0] for r in rows], [r[1] for r in rows]
            mid = sorted(rows, key=lambda r: r[0])[len(rows) // 2]
            lines.append(f"| {model} | {way} | {statistics.median(err):.3g} ({min(err):.3g}-"
                         f"{max(err):.3g}) | {statistics.median(cos):.5f} ({min(cos):.5f}-"
                         f"{max(cos):.5f}) | {mid[2]} {mid[3]:.3g} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from precision import MODELS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16_w025,mobilenet_v3_small",
                        help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--batches", type=int, default=4, help="random batches of 32 (>= 1)")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        print(f"error: --models {args.models!r} is invalid: allowed are {', '.join(MODELS)}",
              file=sys.stderr)
        return 2
    if args.batches < 1:
        print(f"error: --batches {args.batches} is invalid: it must be >= 1", file=sys.stderr)
        return 2
    import jax
    print(f"jax {jax.__version__}, backend {jax.default_backend()}; initial weights (seed 0), "
          f"{args.batches} random batches of 32; conv biases before BatchNorm left out")
    results = {m: gradients(m, args.batches) for m in models}
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
