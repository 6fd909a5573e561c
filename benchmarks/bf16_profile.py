"""Where the time of a bf16 train step goes on XLA:CPU, against f32 (issue 28).

    python benchmarks/bf16_profile.py                       # VGG-16 (width 1.0), batch 32
    python benchmarks/bf16_profile.py --models vgg16,mobilenet_v3_small --steps 5
    PJRT_NPROC=1 taskset -c 0 python benchmarks/bf16_profile.py   # as a pinned worker

For each model (``benchmarks/precision.py``'s list and its ``StepTimer``: the trainer's
own jitted train step, momentum SGD, BatchNorm, the model's fast path) and precision:

1. **the compiled program** (``lower(...).compile().as_text()``: optimised HLO after
   XLA:CPU's passes): every ``dot`` and ``convolution`` with its operand and result
   types and its multiply-adds, and every ``convert`` between bf16 and f32 with its
   element count -- does the patches conv's matmul really run bf16 x bf16 -> f32, or did a
   pass (float normalisation) turn it back into f32?
2. **the time per HLO op kind**: ``--steps`` steps under ``jax.profiler.trace``; XLA:CPU
   records one event per executed thunk, named after its HLO instruction, which this
   script maps back to the instruction's opcode and types and sums per kind (``dot
   bf16``, ``dot f32``, ``conv f32``, ``fusion with converts``, other fusions, copies ...).
   The events are wall time on XLA's threads; with a pool of 1 thread (``PJRT_NPROC=1``)
   their sum is the step's compute time.

Prints, per model: a table of the ops (count, GMAC per step, converted elements) and a
table of time per kind (ms per step, share) for f32 and bf16 side by side, the share of
the bf16 step's multiply-adds that run as bf16 x bf16 dots, with the load average and the
XLA thread-pool size. On a shared machine absolute times move with
the load; shares within a run and the op inventory do not.
"""
from __future__ import annotations

import argparse
import collections
import glob
import math
import os
import pathlib
import re
import sys
import tempfile
import time

import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from precision import MODELS, StepTimer  # noqa: E402

#: ``%name = TYPE[dims]{layout} opcode(operands), attrs`` (one HLO instruction per line)
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\(?[\w\[\]{},: ]*?\)?)\s+([\w\-]+)\((.*)$")
_TYPE = re.compile(r"\b(bf16|f16|f32|f64|s32|u32|s8|u8|pred|s64)\[([\d,]*)\]")


def _shapes(text: str) -> list[tuple[str, tuple]]:
    return [(t, tuple(int(d) for d in dims.split(",") if d)) for t, dims in _TYPE.findall(text)]


def _macs_dot(line: str, out_shape: tuple, operands: list) -> float:
    """Multiply-adds of a dot: output elements x contracted size (from lhs_contracting_dims)."""
    m = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", line)
    if not m or not operands:
        return 0.0
    lhs = operands[0][1]
    k = math.prod(lhs[int(d)] for d in m.group(1).split(",") if d) if m.group(1) else 1
    return math.prod(out_shape) * k


def _macs_conv(line: str, out_shape: tuple, operands: list) -> float:
    """Multiply-adds of a convolution: output elements x kernel window x input features
    (kernel elements / output features, read from dim_labels)."""
    m = re.search(r"dim_labels=\w+_(\w+)->", line)
    if not m or len(operands) < 2:
        return 0.0
    kernel, labels = operands[1][1], m.group(1)
    out_features = kernel[labels.index("o")] if "o" in labels else 1
    return math.prod(out_shape) * math.prod(kernel) / max(1, out_features)


def _computations(hlo: str) -> dict:
    """computation name -> [(name, out (type, shape), opcode, operand names, line)]."""
    comps, current = {}, None
    for line in hlo.splitlines():
        head = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if head and " = " not in line:
            current = comps.setdefault(head.group(1), [])
            continue
        m = _INSTR.match(line)
        if m and current is not None:
            name, out_text, opcode, rest = m.groups()
            out = (_shapes(out_text) or [("?", ())])[0]
            args = rest.split("), ")[0] if "), " in rest else rest.rstrip(")")
            current.append((name, out, opcode, re.findall(r"%([\w.\-]+)", args), line))
    return comps


def _op_kind(instr, shapes: dict) -> tuple[str, float, float]:
    """(kind, multiply-adds, converted elements) of one instruction."""
    name, (out_type, out_shape), opcode, operands, line = instr
    ins = [shapes.get(o, ("?", ())) for o in operands]
    if opcode in ("dot", "convolution"):
        types = "x".join(t for t, _ in ins[:2])
        macs = (_macs_dot if opcode == "dot" else _macs_conv)(line, out_shape, ins)
        return f"{'dot' if opcode == 'dot' else 'conv'} {types}->{out_type}", macs, 0.0
    if opcode == "convert" and ins:
        return f"convert {ins[0][0]}->{out_type}", 0.0, float(math.prod(out_shape))
    return opcode, 0.0, 0.0


def inventory(hlo: str) -> dict:
    """name -> (kind, multiply-adds, converted elements) for every instruction of the
    entry and non-fused computations; a fusion is named after what it holds ('fusion[dot
    bf16xbf16->f32]', 'fusion[conv f32xf32->f32]', 'fusion with converts', 'fusion')."""
    comps = _computations(hlo)
    inner = {}
    for cname, instrs in comps.items():
        shapes = {i[0]: i[1] for i in instrs}
        kinds = [_op_kind(i, shapes) for i in instrs]
        heavy = [k for k in kinds if k[0].startswith(("dot ", "conv "))]
        cvt = sum(k[2] for k in kinds)
        if heavy:
            inner[cname] = (f"fusion[{heavy[0][0]}]", sum(k[1] for k in heavy), cvt)
        else:
            inner[cname] = ("fusion with converts" if cvt else "fusion", 0.0, cvt)
    ops = {}
    for cname, instrs in comps.items():
        shapes = {i[0]: i[1] for i in instrs}
        for instr in instrs:
            if instr[2] == "fusion":
                called = re.search(r"calls=%?([\w.\-]+)", instr[4])
                ops[instr[0]] = inner.get(called.group(1) if called else "", ("fusion", 0.0, 0.0))
            else:
                ops[instr[0]] = _op_kind(instr, shapes)
    return ops


def compiled_text(timer: StepTimer) -> str:
    args = (timer.params, timer.extra, timer.opt_state, jax.numpy.zeros(3), timer.params, 0.0,
            timer.images, timer.labels, timer.mask, timer.key, 0)
    jitted = getattr(timer.step, "jitted", timer.step)
    return jitted.lower(*args).compile().as_text()


def top_level_ops(hlo: str) -> set:
    """Names of the instructions outside fused computations (what runs as a thunk; a
    fusion's inner instructions do not)."""
    called = set(re.findall(r"calls=%?([\w.\-]+)", hlo))
    return {i[0] for cname, instrs in _computations(hlo).items() if cname not in called
            for i in instrs}


def profile(timer: StepTimer, steps: int) -> dict:
    """Summed event wall time per thunk name over ``steps`` traced steps (s)."""
    from jax._src.lib import _profile_data
    timer.time(1)  # warm
    folder = tempfile.mkdtemp(prefix="bf16_profile_")
    with jax.profiler.trace(folder):
        for _ in range(steps):
            timer._one()
    files = glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True)
    data = _profile_data.ProfileData.from_file(files[0])
    per_name = collections.Counter()
    for plane in data.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for ev in line.events:
                per_name[ev.name] += ev.duration_ns * 1e-9
    return per_name


def summarize(ops: dict, top: set, times: dict, steps: int) -> dict:
    """kind -> {count, gmac, converted (M elements), ms per step}."""
    rows = collections.defaultdict(lambda: {"count": 0, "gmac": 0.0, "cvt_m": 0.0, "ms": 0.0})
    for name, (kind, macs, cvt) in ops.items():
        if name not in top or kind in ("parameter", "get-tuple-element", "tuple", "constant"):
            continue
        r = rows[kind]
        r["count"] += 1
        r["gmac"] += macs / 1e9
        r["cvt_m"] += cvt / 1e6
        r["ms"] += 1e3 * times.get(name, 0.0) / steps
    return dict(rows)


def bf16_mac_share(rows: dict) -> tuple[float, float]:
    """(GMAC in dots with bf16 x bf16 operands, GMAC in every dot and conv) per step, from
    :func:`summarize`'s rows (a fusion counts by the dot or conv it holds)."""
    heavy = {k: r["gmac"] for k, r in rows.items()
             if re.search(r"\b(dot|conv) ", k) and r["gmac"] > 0}
    bf16 = sum(g for k, g in heavy.items() if re.search(r"\bdot bf16xbf16->", k))
    return bf16, sum(heavy.values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="vgg16", help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--steps", type=int, default=3, help="traced steps per precision")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hlo-dir", help="also write each compiled program's HLO text here")
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    bad = [m for m in models if m not in MODELS]
    if bad or args.steps < 1:
        ap.error(f"--models {','.join(bad)} invalid: one of {', '.join(MODELS)}; --steps >= 1")
    print(f"load average {os.getloadavg()[0]:.1f}; jax {jax.__version__}; XLA pool "
          f"{os.environ.get('PJRT_NPROC', 'default (the cores this process may use)')}; "
          f"cores {len(os.sched_getaffinity(0))}; batch {args.batch}", flush=True)
    for model in models:
        results = {}
        for precision in ("f32", "bf16"):
            t0 = time.perf_counter()
            timer = StepTimer(model, precision, args.batch)
            hlo = compiled_text(timer)
            if args.hlo_dir:
                pathlib.Path(args.hlo_dir).mkdir(parents=True, exist_ok=True)
                pathlib.Path(args.hlo_dir, f"{model}-{precision}.hlo.txt").write_text(hlo)
            wall, cpu = timer.time(args.steps)
            times = profile(timer, args.steps)
            results[precision] = (summarize(inventory(hlo), top_level_ops(hlo), times, args.steps),
                                  wall, cpu)
            print(f"{model} {precision}: {wall:.3f} s/step wall, {cpu:.3f} cpu s/step "
                  f"(set-up {time.perf_counter() - t0:.0f} s)", flush=True)
        print_tables(model, results)
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    return 0


def print_tables(model: str, results: dict) -> None:
    kinds = sorted({k for r, _, _ in results.values() for k in r},
                   key=lambda k: -max(results[p][0].get(k, {}).get("ms", 0) for p in results))
    print(f"\n{model}: ops of the compiled step and their time (ms per step, traced)\n")
    print("| op kind | f32: n | f32: GMAC | f32: ms | bf16: n | bf16: GMAC | bf16: cvt M elem "
          "| bf16: ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for k in kinds:
        a = results["f32"][0].get(k, {"count": 0, "gmac": 0, "cvt_m": 0, "ms": 0})
        b = results["bf16"][0].get(k, {"count": 0, "gmac": 0, "cvt_m": 0, "ms": 0})
        if max(a["ms"], b["ms"]) < 0.05 and not (a["gmac"] or b["gmac"] or b["cvt_m"]):
            continue
        print(f"| {k} | {a['count']} | {a['gmac']:.3f} | {a['ms']:.1f} | {b['count']} | "
              f"{b['gmac']:.3f} | {b['cvt_m']:.2f} | {b['ms']:.1f} |")
    tot = {p: sum(v["ms"] for v in r.values()) for p, (r, _, _) in results.items()}
    print(f"| **sum of traced ops** | | | {tot['f32']:.1f} | | | | {tot['bf16']:.1f} |")
    for p, (_, wall, cpu) in results.items():
        print(f"{p}: {wall * 1e3:.1f} ms/step wall, {cpu * 1e3:.1f} ms cpu/step")
    low, total = bf16_mac_share(results["bf16"][0])
    if total:
        print(f"bf16: {100 * low / total:.0f} % of the step's multiply-adds run as bf16 x bf16 "
              f"dots ({low:.3f} of {total:.3f} GMAC per step)")


if __name__ == "__main__":
    sys.exit(main())
