"""Client throughput of local training in f32 vs bf16 (``training.precision``).

Times the jitted train step that ``training.local_train`` runs (the trainer's own
cached step: momentum SGD, BatchNorm, masked batch, the model's fast path) for each
model in both precisions, alternating f32 / bf16 repeats, and prints a Markdown
table of the medians with their spread (min-max over repeats):

    python benchmarks/precision.py                          # the three models below
    python benchmarks/precision.py --models vgg16_w025 --repeats 3 --steps 4
    PJRT_NPROC=1 taskset -c 0 python benchmarks/precision.py    # one core, as a pinned worker

Models (batch 32, uint8 input standardised in the step, random data):

* ``vgg16``: VGG-16, BatchNorm, CIFAR head, 32x32, 10 classes (width 1.0);
* ``vgg16_w025``: the same at width 0.25;
* ``mobilenet_v3_small``: MobileNetV3-Small, 64x64, 200 classes.

Per repeat: ``--steps`` steps after one warm-up step, each ended with
``block_until_ready``; examples/s = batch / (median step time). "cpu s/step" is the
process CPU time per step (all threads): on a shared machine it moves less with other
jobs' load than the wall clock. The first call of each step (compilation) is
reported apart. The load average before and after, the CPU's bf16 support and the
XLA thread-pool size (``PJRT_NPROC``, default the cores this process may use) are
printed with the table. Then the bound: a matmul alone (a square 2048^3 one and VGG-16's
conv as patches) with bf16 operands and f32 accumulation against f32, GFLOP/s: a step
cannot gain more from bf16 than its matmuls do (XLA:CPU has a native bf16 dot only on
CPUs with ``avx512_bf16`` or ``amx_bf16``; elsewhere it converts to f32).

Accuracy (``--accuracy``): the same federated run in both precisions through the real
engine (``python -m fedjax_grid.cli run``, one run at a time, alternating f32 / bf16
per seed): VGG-16 width 0.25 with BatchNorm on the CIFAR-10 slice
(``../shared/data/cifar-10-binary-sample.tar.gz``; ``FEDJAX_GRID_SHARED_DATA``
overrides), 10 iid clients, momentum SGD lr 0.05, batch 32, ``--rounds`` rounds. It
prints the global test accuracy per seed at the final round and as the mean of the last
3 rounds (the accuracy suites' measure), each as mean +- sd, and the paired differences
bf16 - f32 (goal: |mean difference| <= 0.5 points). ``--control`` adds a third run per
seed, f32 on the stock conv path (the same training, its gradient ~1e-6 relative off
the fast path's), and its paired tables: f32-stock - f32 is how far a change of rounding
alone moves the accuracy, the floor a bf16 - f32 difference is read against. With
``--out DIR`` the runs are kept in ``DIR/<data>-<precision>-s<seed>``: an interrupted
run resumes from its checkpoint and a finished one is extended to a larger ``--rounds``
(``fedjax-grid run --resume --set training.rounds=N``; a run's first rounds do not
depend on its length), so a longer comparison costs only the new rounds:

    python benchmarks/precision.py --accuracy --seeds 0,1,2 --rounds 20 \
        --out benchmarks/out/precision-accuracy
    python benchmarks/precision.py --accuracy --data digits --seeds 0,1,2 --rounds 8  # quickstart
    python benchmarks/precision.py --accuracy --seeds 0,1,2,3,4,5 --rounds 20 --control \
        --out benchmarks/out/precision-accuracy
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import csv
import functools
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_grid.models import fast_paths, get_model
from fedjax_grid.models.precision import PRECISIONS, with_precision
from fedjax_grid.training import HParams, Standardize, init_variables, trainer

#: name -> (registry name, input side, classes, model kwargs)
MODELS = {
    "vgg16": ("vgg16", 32, 10, {"norm": "batch"}),
    "vgg16_w025": ("vgg16", 32, 10, {"norm": "batch", "width": 0.25}),
    "mobilenet_v3_small": ("mobilenet_v3_small", 64, 200, {}),
}


def backend_name() -> str:
    """JAX's default backend and its first device's kind, e.g. 'cpu (cpu)', 'gpu (NVIDIA H200)'."""
    return f"{jax.default_backend()} ({jax.devices()[0].device_kind})"


def cpu_bf16_flags() -> str:
    """The CPU's bf16-related feature flags (Linux), or 'none'."""
    from fedjax_grid.grid.plugin import cpu_flags
    return " ".join(sorted(f for f in cpu_flags() if "bf16" in f or f.startswith("amx"))) or "none"


class StepTimer:
    """One model's trainer train step in one precision, with its own state."""

    def __init__(self, model_name: str, precision: str, batch: int):
        name, hw, classes, kw = MODELS[model_name]
        model = get_model(name, classes, **kw)
        self.hp = HParams(optimizer="momentum", learning_rate=0.01, batch_size=batch,
                          precision=precision)
        devs = trainer.device_tuple(None)
        rep, _ = trainer.shardings(devs)
        variables = init_variables(model, (hw, hw, 3), 0)
        params, self.extra = trainer.split_collections(variables)
        self.params = jax.device_put(params, rep)
        self.opt_state = trainer.get_opt_init("momentum", False, devs)(
            self.params, trainer.opt_hparams(self.hp))
        self.step = trainer.get_train_step(with_precision(model, precision), "momentum",
                                            False, False, Standardize(), devs)
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, (batch, hw, hw, 3), dtype=np.uint8)
        self.labels = rng.integers(0, classes, batch).astype(np.int32)
        self.mask = np.ones(batch, np.float32)
        self.key = jax.random.PRNGKey(0)
        self.calls = 0
        t0 = time.perf_counter()
        self._one()
        self.compile_s = time.perf_counter() - t0

    def _one(self):
        self.params, self.extra, self.opt_state, sums = self.step(
            self.params, self.extra, self.opt_state, np.zeros(3, np.float32), self.params,
            np.float32(0.0), self.images, self.labels, self.mask, self.key, np.int32(self.calls))
        self.calls += 1
        jax.block_until_ready(sums)
        return sums

    def time(self, steps: int) -> tuple[float, float]:
        """(median wall s/step, mean process-CPU s/step) over ``steps`` steps."""
        self._one()  # warm-up
        walls = []
        c0 = time.process_time()
        for _ in range(steps):
            t0 = time.perf_counter()
            sums = self._one()
            walls.append(time.perf_counter() - t0)
        cpu = (time.process_time() - c0) / steps
        if not np.all(np.isfinite(np.asarray(sums))):
            raise RuntimeError("non-finite loss")
        return statistics.median(walls), cpu


def _spread(values) -> str:
    return f"{min(values):.1f}-{max(values):.1f}"


def run(models, repeats: int, steps: int, batch: int) -> list[dict]:
    rows = []
    for m in models:
        timers = {p: StepTimer(m, p, batch) for p in PRECISIONS}
        wall = {p: [] for p in PRECISIONS}
        cpu = {p: [] for p in PRECISIONS}
        for r in range(repeats):
            order = PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]
            for p in order:
                w, c = timers[p].time(steps)
                wall[p].append(w)
                cpu[p].append(c)
        for p in PRECISIONS:
            rows.append({"model": m, "precision": p, "compile_s": timers[p].compile_s,
                         "ex_s": [batch / w for w in wall[p]],
                         "cpu_step_s": statistics.median(cpu[p]),
                         "wall_step_s": statistics.median(wall[p])})
    return rows


#: (m, k, n) of the matmuls timed by :func:`matmul_bound`: a square one and VGG-16's
#: 3x3 conv of 128 channels on 16x16 maps at batch 32 as patches (32*16*16, 9*128) x (9*128, 128).
MATMUL_SHAPES = ((2048, 2048, 2048), (8192, 1152, 128))


@functools.partial(jax.jit, static_argnums=2)
def _dot(a, b, bf16: bool):
    if bf16:  # what the fast path's bf16 matmuls do: bf16 operands, f32 accumulation
        return jnp.dot(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16),
                       preferred_element_type=jnp.float32)
    return jnp.dot(a, b)


@jax.jit
def _bf16_dot(a, b):
    """The dot kernel alone: operands already bf16, f32 accumulation."""
    return jnp.dot(a, b, preferred_element_type=jnp.float32)


def matmul_bound(repeats: int = 5) -> list[dict]:
    """Per shape in :data:`MATMUL_SHAPES`: GFLOP/s of the f32 matmul and of the bf16 one
    (operands rounded to bf16 inside the step, f32 accumulation), medians of ``repeats``
    alternating timings after a warm-up, and their ratio: the most a bf16 step can gain
    on its matmuls on this CPU."""
    rows = []
    for m, k, n in MATMUL_SHAPES:
        a = jax.random.normal(jax.random.PRNGKey(0), (m, k), jnp.float32)
        b = jax.random.normal(jax.random.PRNGKey(1), (k, n), jnp.float32)
        a16, b16 = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
        calls = {"f32": lambda: _dot(a, b, False), "bf16": lambda: _dot(a, b, True),
                 "bf16_kernel": lambda: _bf16_dot(a16, b16)}
        times = {name: [] for name in calls}
        for call in calls.values():
            call().block_until_ready()
        for r in range(repeats):
            for name in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
                t = time.perf_counter()
                calls[name]().block_until_ready()
                times[name].append(time.perf_counter() - t)
        gflops = {p: 2 * m * k * n / statistics.median(t) / 1e9 for p, t in times.items()}
        rows.append({"shape": (m, k, n), "f32_gflops": gflops["f32"],
                     "bf16_gflops": gflops["bf16"], "kernel_gflops": gflops["bf16_kernel"],
                     "ratio": gflops["bf16"] / gflops["f32"],
                     "kernel_ratio": gflops["bf16_kernel"] / gflops["f32"]})
    return rows


def print_matmul_bound(rows) -> None:
    print("\nthe bound: a matmul alone, bf16 operands (f32 accumulation) vs f32, on "
          f"{backend_name()}\n")
    print("| matmul (m x k x n) | f32 GFLOP/s | bf16 GFLOP/s (rounding in the step) | bf16 / f32 "
          "| bf16 kernel alone GFLOP/s (operands already bf16) | kernel / f32 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {' x '.join(map(str, r['shape']))} | {r['f32_gflops']:.1f} | "
              f"{r['bf16_gflops']:.1f} | {r['ratio']:.2f}x | {r['kernel_gflops']:.1f} | "
              f"{r['kernel_ratio']:.2f}x |")


def print_table(rows, batch: int) -> None:
    print("| model | precision | examples/s (median) | spread (min-max) | s/step | cpu s/step "
          "| compile s | bf16 / f32 (wall) | bf16 / f32 (cpu) |")
    print("|---|---|---|---|---|---|---|---|---|")
    by = {(r["model"], r["precision"]): r for r in rows}
    for r in rows:
        speed = cpu_speed = ""
        if r["precision"] == "bf16":
            f = by[(r["model"], "f32")]
            speed = f"{f['wall_step_s'] / r['wall_step_s']:.2f}x"
            cpu_speed = f"{f['cpu_step_s'] / r['cpu_step_s']:.2f}x"
        print(f"| {r['model']} | {r['precision']} | {statistics.median(r['ex_s']):.1f} "
              f"| {_spread(r['ex_s'])} | {r['wall_step_s']:.3f} | {r['cpu_step_s']:.3f} "
              f"| {r['compile_s']:.1f} | {speed} | {cpu_speed} |")


#: --data: what the accuracy comparison trains (CLI --set overrides besides seed, rounds, precision)
ACCURACY_DATA = {
    "cifar10": ("VGG-16 width 0.25, CIFAR-10 slice, 10 iid clients",
                ["model.name=vgg16", "model.kwargs={width: 0.25, norm: batch, head: cifar}",
                 "data.source=cifar10", "DATA_PATH", "data.image_size=null",
                 "partition.num_clients=10", "training.optimizer=momentum", "training.lr=0.05",
                 "training.batch_size=32"]),
    "digits": ("the quickstart preset: VGG-11 width 0.25, digits 32x32, 4 iid clients", []),
}


def _recorded(out: pathlib.Path) -> list[float]:
    """Global test accuracy per recorded round (fractions) of the run in ``out``; [] if none."""
    if not (out / "rounds.csv").is_file():
        return []
    with open(out / "rounds.csv") as f:
        return [float(r["global_accuracy"]) for r in csv.DictReader(f)]


#: --bf16-path -> the bf16 runs' ``model.kwargs.fast_path``. fast: None, the model's CPU fast
#: path (bf16 operands in the matmuls, activations f32); stock: False, Flax's own bf16 policy
#: (bf16 activations through every layer, as on a GPU; on XLA:CPU ~2x slower than f32)
BF16_PATHS = {"fast": None, "stock": False}


class KeptRunMismatch(ValueError):
    """A kept run folder holds another run than the one asked for."""


def _check_kept(out: pathlib.Path, seed: int, precision: str, fast_path: bool | None) -> None:
    """A kept run must be the run asked for (seed, precision, fast path), else one line."""
    cfg = json.loads((out / "config.json").read_text())
    fast = (cfg.get("model", {}).get("kwargs") or {}).get("fast_path")
    want = (seed, precision, fast_path)
    have = (cfg.get("seed"), cfg.get("training", {}).get("precision"), fast)
    if have != want:
        raise KeptRunMismatch(f"--out: {str(out)!r} holds another run (seed, precision, "
                              f"fast_path {have}, asked {want}): move it away or use another --out")


def accuracy_run(seed: int, precision: str, rounds: int, out: pathlib.Path,
                 data: str = "cifar10", fast_path: bool | None = None) -> list[float]:
    """Global test accuracy of rounds 1..``rounds`` (fractions) of one CLI run in ``out``.

    A run already in ``out`` with that many rounds is read, not re-run; one with fewer
    (interrupted, or finished at a smaller ``rounds``) is resumed from its last
    checkpoint and extended to ``rounds``; a folder without a checkpoint starts afresh.
    ``fast_path``: the model's ``fast_path`` (None: the model's default; ``BF16_PATHS``)."""
    if (out / "config.json").is_file() and (out / "rounds.csv").is_file():
        _check_kept(out, seed, precision, fast_path)
    done = _recorded(out)
    if len(done) >= rounds:
        return done[:rounds]
    resume = any((out / "checkpoints").glob("ckpt-*"))
    if out.exists() and not resume:
        shutil.rmtree(out)   # a start that never reached a checkpoint: nothing to keep
    # --yes: a benchmark asks nobody; the CLI's estimate gate (over 10 min) stops the stock
    # path's runs otherwise
    cmd = [sys.executable, "-m", "fedjax_grid.cli", "run", "--out", str(out), "--quiet",
           "--no-plots", "--yes"]
    if resume:
        sets = [f"training.rounds={rounds}"]
        cmd.append("--resume")
    else:
        from fedjax_grid.data.paths import shared_data_dir
        path = shared_data_dir() / "cifar-10-binary-sample.tar.gz"
        sets = [f"data.path={path}" if s == "DATA_PATH" else s for s in ACCURACY_DATA[data][1]]
        sets += [f"training.rounds={rounds}", f"training.precision={precision}",
                 f"seed={seed}", "grid.dashboard_address=null"]
        if fast_path is not None:
            sets.append(f"model.kwargs.fast_path={str(fast_path).lower()}")
        cmd += ["--preset", "quickstart"] if data == "digits" else []
    subprocess.run(cmd + [a for s in sets for a in ("--set", s)], check=True,
                   stdout=subprocess.DEVNULL)
    return _recorded(out)[:rounds]


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def print_accuracy_table(curves: dict, seeds: list[int], measure: str, last: int,
                         other: str = "bf16") -> None:
    """Markdown table of ``measure`` (the mean of each run's last ``last`` rounds, in %)
    for f32 and the arm ``other``: mean +- sd and per seed; then ``other`` - f32 paired by
    seed. ``curves``: arm (``'f32'``, ``'bf16'``, ``'f32-stock'``) -> seed -> accuracies
    per round (fractions)."""
    value = {p: {s: 100 * statistics.mean(curves[p][s][-last:]) for s in seeds}
             for p in ("f32", other)}
    print(f"| precision | {measure} % (mean +- sd) | per seed |")
    print("|---|---|---|")
    for p in ("f32", other):
        v = [value[p][s] for s in seeds]
        mean, sd = _mean_sd(v)
        print(f"| {p} | {mean:.2f} +- {sd:.2f} "
              f"| {', '.join(f'{x:.1f}' for x in v)} |")
    diff = [value[other][s] - value["f32"][s] for s in seeds]
    mean, sd = _mean_sd(diff)
    print(f"| {other} - f32 (paired) | {mean:+.2f} +- {sd:.2f} "
          f"| {', '.join(f'{x:+.1f}' for x in diff)} |")


#: The control arm's line above its tables (``--control``).
CONTROL_NOTE = ("The floor of a paired difference: f32-stock is the same f32 training on "
                "Flax's stock conv path (XLA's conv; its gradient is ~1e-6 relative off the "
                "fast path's, benchmarks/bf16_gradients.py), so f32-stock - f32 is what a "
                "change of rounding alone moves the accuracy, seed by seed")


def print_accuracy_tables(curves: dict, seeds: list[int], rounds: int) -> None:
    """The final-round and (``rounds`` >= 3) last-3-rounds tables of bf16 - f32, then the
    same of the control arm f32-stock - f32, each over those of ``seeds`` that ran both
    arms (an arm ``curves`` lacks, or no seed in common: no table)."""
    for other in ("bf16", "f32-stock"):
        both = [s for s in seeds if s in curves.get("f32", {}) and s in curves.get(other, {})]
        if not both:
            continue
        if other == "f32-stock":
            print(f"\n{CONTROL_NOTE} (seeds {', '.join(map(str, both))}):\n")
        print_accuracy_table(curves, both, "final accuracy", 1, other)
        if rounds >= 3:
            print()
            print_accuracy_table(curves, both, "mean of the last 3 rounds", 3, other)


def accuracy_arms(bf16_path: str = "fast", control: bool = False) -> list[tuple]:
    """The runs of one seed: (label, precision, ``model.kwargs.fast_path``, folder tag).
    f32 on the model's default path, bf16 on ``bf16_path``, and with ``control`` f32 on
    the stock path (``'f32-stock'``, the floor of a paired difference)."""
    arms = [("f32", "f32", None, "f32"),
            ("bf16", "bf16", BF16_PATHS[bf16_path],
             "bf16-stock" if bf16_path == "stock" else "bf16")]
    if control:
        arms.append(("f32-stock", "f32", False, "f32-stock"))
    return arms


def accuracy(seeds: list[int], rounds: int, data: str = "cifar10", jobs: int = 1,
             out: pathlib.Path | None = None, bf16_path: str = "fast",
             control: bool = False) -> int:
    """Accuracy of f32 vs bf16 runs per seed, at the final round and as the mean of the
    last 3 rounds; prints the tables. Returns 0.
    ``jobs`` > 1 runs that many seeds at once (each seed's runs one after the other):
    for a machine with cores and accelerator memory to spare, e.g. a GPU host. ``out``:
    keep (and resume or extend) the runs there, else in a temporary folder. ``bf16_path``:
    a key of ``BF16_PATHS`` (the f32 runs are the same either way). ``control``: a third
    run per seed, f32 on the stock path, and its tables (``accuracy_arms``)."""
    arms = accuracy_arms(bf16_path, control)
    curves = {label: {} for label, *_ in arms}
    load0 = os.getloadavg()

    def one_seed(i, seed, root):
        for label, p, fast_path, tag in (arms if i % 2 == 0 else arms[::-1]):
            t0, run_dir = time.time(), pathlib.Path(root) / f"{data}-{tag}-s{seed}"
            had = len(_recorded(run_dir))
            acc = accuracy_run(seed, p, rounds, run_dir, data, fast_path)
            curves[label][seed] = acc
            kept = f", rounds 1-{min(had, rounds)} kept from {run_dir.name}" if had else ""
            print(f"seed {seed} {label}: {' '.join(f'{100 * a:.1f}' for a in acc)} "
                  f"({time.time() - t0:.0f} s{kept})", flush=True)

    with contextlib.ExitStack() as stack:
        if out is None:
            root = stack.enter_context(tempfile.TemporaryDirectory(prefix="fedjax_grid-precision-"))
        else:
            out.mkdir(parents=True, exist_ok=True)
            root = out
        with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
            for f in [pool.submit(one_seed, i, s, root) for i, s in enumerate(seeds)]:
                f.result()
    print(f"\n{ACCURACY_DATA[data][0]}, {rounds} rounds, bf16 on the {bf16_path} path, "
          f"backend {backend_name()}, {jobs} "
          f"seed(s) at a time; load average {load0[0]:.1f} before, {os.getloadavg()[0]:.1f} "
          "after\n")
    print_accuracy_tables(curves, seeds, rounds)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--repeats", type=int, default=5, help="alternating repeats per precision")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--patches-max", type=int, default=None, help=(
        "override fast_paths.PATCHES_MAX_SPATIAL_BF16 (the largest map a bf16 conv runs "
        f"as patches + matmul; default {fast_paths.PATCHES_MAX_SPATIAL_BF16})"))
    parser.add_argument("--accuracy", action="store_true",
                        help="federated accuracy of f32 vs bf16 instead of throughput")
    parser.add_argument("--seeds", default="0,1,2", help="--accuracy: comma-separated seeds")
    parser.add_argument("--rounds", type=int, default=10, help="--accuracy: federated rounds")
    parser.add_argument("--jobs", type=int, default=1,
                        help="--accuracy: seeds run at once (default 1: one run at a time)")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="--accuracy: keep the runs in this folder and resume or extend "
                             "them (default: a temporary folder)")
    parser.add_argument("--bf16-path", default="fast", choices=sorted(BF16_PATHS),
                        help="--accuracy: the bf16 runs on the model's CPU fast path (bf16 "
                             "operands in the matmuls) or Flax's stock bf16 policy")
    parser.add_argument("--data", default="cifar10", choices=sorted(ACCURACY_DATA),
                        help="--accuracy: cifar10 (VGG-16 w0.25, the CIFAR-10 slice) or digits "
                             "(the quickstart preset, smaller)")
    parser.add_argument("--control", action="store_true",
                        help="--accuracy: a third run per seed, f32 on the stock conv path: "
                             "f32-stock - f32 is the floor of a paired difference")
    args = parser.parse_args(argv)
    if args.accuracy:
        try:
            seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        except ValueError:
            seeds = []
        if not seeds or min(seeds) < 0 or args.rounds < 1 or args.jobs < 1:
            print(f"error: --seeds {args.seeds!r} / --rounds {args.rounds} / --jobs {args.jobs} "
                  "is invalid: seeds must be integers >= 0, rounds and jobs >= 1",
                  file=sys.stderr)
            return 2
        if args.out is not None and args.out.exists() and not args.out.is_dir():
            print(f"error: --out {str(args.out)!r} is invalid: it is a file, not a folder",
                  file=sys.stderr)
            return 2
        try:
            return accuracy(seeds, args.rounds, args.data, args.jobs, args.out, args.bf16_path,
                            args.control)
        except KeptRunMismatch as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        print(f"error: --models {','.join(bad)!r} is invalid: allowed are {', '.join(MODELS)}",
              file=sys.stderr)
        return 2
    if min(args.repeats, args.steps, args.batch) < 1:
        print("error: --repeats, --steps and --batch must be integers >= 1", file=sys.stderr)
        return 2
    if args.patches_max is not None:
        fast_paths.PATCHES_MAX_SPATIAL_BF16 = args.patches_max
    load0 = os.getloadavg()
    rows = run(models, args.repeats, args.steps, args.batch)
    load1 = os.getloadavg()
    print(f"jax {jax.__version__}, backend {backend_name()}, "
          f"{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, bf16 flags: {cpu_bf16_flags()}, XLA threads "
          f"(PJRT_NPROC) {os.environ.get('PJRT_NPROC', len(os.sched_getaffinity(0)))}, "
          f"bf16 patches max {fast_paths.PATCHES_MAX_SPATIAL_BF16}, batch {args.batch}, "
          f"{args.repeats} repeats x {args.steps} steps; load average "
          f"{load0[0]:.1f} before, {load1[0]:.1f} after")
    print()
    print_table(rows, args.batch)
    print_matmul_bound(matmul_bound())
    return 0


if __name__ == "__main__":
    sys.exit(main())
