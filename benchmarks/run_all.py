"""Run the performance benchmarks and the accuracy suite; assemble docs/RESULTS.md.

    python benchmarks/run_all.py                       # everything (long: ~1 h on 2 cores)
    python benchmarks/run_all.py --skip-perf           # only the accuracy suites
    python benchmarks/run_all.py --only throughput,accuracy-vgg
    python benchmarks/run_all.py --assemble            # rebuild RESULTS.md from benchmarks/out/

Each piece runs as a subprocess (``nice -n 10`` with ``--nice``); its printed
output goes to ``benchmarks/out/<piece>.out`` and a ``<piece>.json`` records the
command, start/end time, exit code and the machine it ran on. ``docs/RESULTS.md``
is then assembled from every piece found in ``benchmarks/out/`` (so pieces can be
re-run one at a time and merged); a piece never run is listed with its command.

Pieces: throughput, data_reads, fragments, engine_overhead (performance) and
accuracy-vgg, accuracy-mobilenet, accuracy-texture (``benchmarks/accuracy.py``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shlex
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
RESULTS = REPO / "docs" / "RESULTS.md"

PERF = {
    "throughput": ["benchmarks/throughput.py", "--steps", "5"],
    "data_reads": ["benchmarks/data_reads.py", "--batches", "50"],
    "fragments": ["benchmarks/fragments.py"],
    "engine_overhead": ["benchmarks/engine_overhead.py"],
    "async-vs-sync-digits": ["benchmarks/async_vs_sync.py", "--data", "digits", "--budget", "100"],
    "async-vs-sync-cifar10": ["benchmarks/async_vs_sync.py", "--data", "cifar10", "--budget", "240",
                              "--target", "0.25"],
    # the runs behind it (benchmarks/out/compression-run{1,2,3}.json): see its note
    "codecs": ["benchmarks/compression.py", "--recompute", "benchmarks/out/compression-run3.json",
               "--compute-s", "2.0"],
    "cpu-bound": ["benchmarks/cpu_bound.py"],
    # needs the optional extra: pip install -e ".[compare]" (Flower); else exit 2
    "vs-flower": ["benchmarks/vs_flower.py", "--json", "benchmarks/out/vs_flower-raw.json"],
    # training.precision: client throughput f32 vs bf16, then accuracy over 3 seeds
    "precision": ["benchmarks/precision.py"],
    "precision-accuracy": ["benchmarks/precision.py", "--accuracy", "--seeds", "0,1,2",
                           "--rounds", "10"],
    # one client per compiled step vs vmapped clients vs more XLA threads per task
    "client-tasks": ["benchmarks/client_tasks.py"],
    # compile once per grid: round 1 against a steady round, cold and warm caches
    "first-round": ["benchmarks/first_round.py"],
}
ACCURACY = {f"accuracy-{s}": ["benchmarks/accuracy.py", "--suite", s]
            for s in ("vgg", "vgg-forming", "mobilenet", "texture")}
#: How much of the gap to centralized closes when each client takes 5x more local steps
#: per round (2 clients of 20,000 images instead of 10 of 4,000)? 3 rounds (~25 min).
ACCURACY["accuracy-mobilenet-2clients"] = [
    "benchmarks/accuracy.py", "--suite", "mobilenet", "--runs", "iid static",
    "--set", "partition.num_clients=2", "--tag=-2clients", "--rounds", "3"]
#: Which reading of the study's "balanced" matches its 0.988 ratio (figure in docs/results).
STUDY_PIECES = {
    "calibration": ["benchmarks/balanced_calibration.py"],
    "paper-table": ["benchmarks/paper_table.py", "--rounds", "2", "--width", "0.25",
                    "--clients", "10", "--max-test-examples", "2000"],
}
PIECES = {**PERF, **ACCURACY, **STUDY_PIECES}

TITLES = {
    "throughput": "Train-step throughput (XLA:CPU, fast vs stock conv path)",
    "data_reads": "Random-access reads of every prepared source",
    "fragments": "Texture fragments: read speed and index memory",
    "engine_overhead": "Engine overhead vs a sequential loop",
    "async-vs-sync-digits": "Asynchronous (FedBuff) vs synchronous rounds: digits",
    "async-vs-sync-cifar10": "Asynchronous (FedBuff) vs synchronous rounds: CIFAR-10 slice",
    "codecs": "Compression: fewer bytes on the desktops' links (benchmarks/compression.py)",
    "cpu-bound": "What bounds a steady-state round: the CPU its work needs (benchmarks/cpu_bound.py)",
    "vs-flower": "Rounds against Flower on the same client work (benchmarks/vs_flower.py)",
    "precision": "Client throughput in bf16 vs f32 (benchmarks/precision.py)",
    "precision-accuracy": "Accuracy in bf16 vs f32, 3 seeds (benchmarks/precision.py --accuracy)",
    "client-tasks": "Client tasks: vmapped clients and XLA threads (benchmarks/client_tasks.py)",
    "first-round": "Compile once per grid: round 1 vs a steady round (benchmarks/first_round.py)",
    "accuracy-vgg": "Accuracy: VGG-16 on the CIFAR-10 slice, data distributions vs centralized",
    "accuracy-vgg-forming": "Accuracy: VGG-16 on the CIFAR-10 slice, the four forming strategies",
    "accuracy-mobilenet": "Accuracy: MobileNetV3-Small on the medium Tiny-ImageNet set",
    "accuracy-texture": "Accuracy: texture fragments of the DTD slice",
    "accuracy-mobilenet-2clients": "Accuracy: MobileNetV3-Small federated over 2 clients instead of 10",
    "calibration": "Calibration: which reading of the study's \"balanced\" matches its numbers",
    "paper-table": "The study's table at CPU scale (benchmarks/paper_table.py)",
}

#: Figures a non-accuracy piece draws (shown under its output).
FIGURES = {"calibration": ["results/balanced_calibration.png"],
           "async-vs-sync-digits": ["results/async_vs_sync_digits.png"],
           "async-vs-sync-cifar10": ["results/async_vs_sync_cifar10.png"],
           "codecs": ["results/compression.png"]}

#: Where a performance piece's earlier measurements are written down (shown when it was not run).
EARLIER = {
    "throughput": "[THROUGHPUT.md](THROUGHPUT.md)",
    "data_reads": "the docstring of `benchmarks/data_reads.py`",
    "fragments": "the docstring of `benchmarks/fragments.py`",
}

#: The study's reported accuracies (full data sets, full-size models, GPU-less desktop grid).
STUDY = [("VGG-16, CIFAR-10, independent", "vgg", "iid static", 86.21),
         ("VGG-16, CIFAR-10, balanced(0.8) read as stratified(0.8)", "vgg",
          "stratified(0.8) static", 85.18),
         ("VGG-16, CIFAR-10, balanced(0.8) read as home-class balanced(0.8)", "vgg",
          "balanced(0.8) static", 85.18),
         ("MobileNetV3, Tiny-ImageNet, independent", "mobilenet", "iid static", 50.08),
         ("MobileNetV3, Tiny-ImageNet, balanced(0.9) read as stratified(0.9)", "mobilenet",
          "stratified(0.9) static", 40.31)]


# ---------------------------------------------------------------- machine

def machine_info() -> dict:
    """CPU model, cores, RAM, OS, Python and library versions, GPU presence."""
    cpu = platform.processor() or "unknown"
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        cpu = m.group(1).strip() if m else cpu
        flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
        simd = [f for f in ("avx2", "avx512f", "amx_tile") if flags and f in flags.group(1).split()]
    except OSError:
        simd = []
    ram = None
    try:
        m = re.search(r"MemTotal:\s*(\d+) kB", pathlib.Path("/proc/meminfo").read_text())
        ram = round(int(m.group(1)) / 2**20, 1) if m else None
    except OSError:
        pass
    versions = {}
    for mod in ("jax", "jaxlib", "flax", "optax", "numpy", "dask", "distributed", "pandas",
                "seaborn", "fedjax_grid"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing library is reported as such
            versions[mod] = "n/a"
    try:
        gpu = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        gpu = None
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"cpu": cpu, "simd": simd, "cores": os.cpu_count(), "ram_gib": ram,
            "os": platform.platform(), "python": platform.python_version(),
            "versions": versions, "gpu": gpu, "load_1min": load}


def machine_line(m: dict) -> str:
    v = m.get("versions", {})
    gpu = m.get("gpu") or "no GPU"
    load = m.get("load_1min")
    return (f"{m.get('cpu')} ({', '.join(m.get('simd') or []) or 'no AVX2'}), "
            f"{m.get('cores')} cores, {m.get('ram_gib')} GiB RAM, {gpu}; "
            f"Python {m.get('python')}, jax {v.get('jax')}, flax {v.get('flax')}, "
            f"optax {v.get('optax')}, dask {v.get('dask')}; load average at start "
            f"{'n/a' if load is None else f'{load:.1f}'} (the 2 cores are shared with other jobs)")


def git_commit() -> str:
    """Short HEAD commit of the repository, '+dirty' when tracked files are modified."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


# ---------------------------------------------------------------- running

def run_piece(name: str, extra: list[str], nice: bool) -> int:
    """Run one piece as a subprocess; write benchmarks/out/<name>.out and .json."""
    OUT.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, *PIECES[name], *extra]
    shown = "python " + shlex.join(PIECES[name] + extra)
    if nice:
        cmd = ["nice", "-n", "10", *cmd]
    meta = {"piece": name, "command": shown, "machine": machine_info(), "commit": git_commit(),
            "started": datetime.datetime.now().isoformat(timespec="seconds")}
    print(f"== {name}: {shown}", flush=True)
    t = time.perf_counter()
    with open(OUT / f"{name}.out", "w") as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    meta.update(finished=datetime.datetime.now().isoformat(timespec="seconds"),
                wall_s=round(time.perf_counter() - t, 1), returncode=proc.returncode)
    (OUT / f"{name}.json").write_text(json.dumps(meta, indent=1))
    print(f"   exit {proc.returncode} after {meta['wall_s']:.0f} s -> {OUT / (name + '.out')}",
          flush=True)
    return proc.returncode


# ---------------------------------------------------------------- assembling

def _accuracy_section(text: str) -> str:
    """The table, the targets and the figure paths of an accuracy.py output."""
    lines = text.splitlines()
    keep = [ln for ln in lines if ln.startswith("|") or ln.startswith("- PASS")
            or ln.startswith("- FAIL") or ln.startswith("Targets") or "(--reuse)" in ln
            and not ln.startswith("[")]
    figs = []
    for ln in lines:
        if "figures:" in ln:
            figs += [p.strip() for p in ln.split("figures:", 1)[1].split(",")]
    out = "\n".join(keep).replace("Targets:", "\nTargets:")
    for p in figs:
        rel = os.path.relpath(p, RESULTS.parent) if os.path.isabs(p) else p
        out += f"\n\n![{pathlib.Path(p).stem}]({rel})"
    return out


def _summary_rows() -> tuple[dict, dict]:
    """((suite, run) -> row, (suite, run) -> accuracy curve) from
    benchmarks/out/accuracy/<suite>/results.json (curve: global accuracy per round, 0-1)."""
    rows, curves = {}, {}
    for path in sorted((OUT / "accuracy").glob("*/results.json")):
        try:
            data = json.loads(path.read_text())
            if not all("tail_acc" in r for r in data["rows"]):
                continue  # written by an older accuracy.py: re-run that suite
            for r in data["rows"]:
                rows[(r["suite"], r["run"])] = r
            suite = data["rows"][0]["suite"] if data["rows"] else None
            for name, table in data.get("curves", {}).items():
                curves[(suite, name)] = [float(a) for a in table["global_accuracy"]]
        except (OSError, ValueError, KeyError, IndexError):
            continue
    return rows, curves


def _acc_cell(r: dict) -> str:
    """'final % (mean of the last 3 rounds %)' of a summary row."""
    tail = r.get("tail_acc")
    return f"{100 * r['final_acc']:.2f} %" + (f" ({100 * tail:.2f} %)" if tail is not None else "")


def _study_table(rows: dict) -> str:
    lines = ["| setting (study) | study, full data/model | here: last round (mean of last 3), "
             "slice, CPU scale | here, centralized at equal epochs |", "|---|---|---|---|"]
    for label, suite, run, study in STUDY:
        r, c = rows.get((suite, run)), rows.get((suite, "centralized"))
        here = (f"{_acc_cell(r)} ({r['model']} width {r['width']:g}, "
                f"{r['clients']} clients, {r['rounds']} rounds)") if r else "not run"
        cen = _acc_cell(c) if c else "not run"
        lines.append(f"| {label} | {study:.2f} % | {here} | {cen} |")
    return "\n".join(lines)


INTRO = """# Measured results

Everything below was produced by `python benchmarks/run_all.py` (pieces re-run with
`--only`, merged from `benchmarks/out/`) on the machine named in each section, with
the commit each piece ran on. The numbers are measurements of one run each on a
**2-core CPU that is shared with other jobs** (pieces run under `nice -n 10`; two
pieces sometimes ran side by side): wall times vary by up to 2x with the load.
Accuracies are single runs with seed 0 unless a section names more seeds. A run is
deterministic for its seed and does not depend on the load (the 40-round VGG-16 run repeats, to the last digit, the
curve of an earlier 24-round run with the same seed), but its curve moves by 3-6
points from round to round, so the targets compare the mean of the last 3 rounds.

**No GPU machine was available to this task**: the GPU rows of the suite (the study's
full model sizes and round counts on a GPU) were not produced. The suite never
requires a GPU; on a machine with one, `python benchmarks/run_all.py --skip-perf
--only accuracy-vgg --width 1 --rounds 90` runs the full-width model.

## What was and was not reproduced from the study

The study (ITP RAS, GRID'2023) reports VGG-16 on CIFAR-10 86.21 % (independent) /
85.18 % (balanced 0.8) and MobileNetV3 on Tiny-ImageNet-200 50.08 % / 40.31 %. Those
are **full-data, full-size** results (50,000 CIFAR images, 100,000 Tiny-ImageNet
images, 90-150 rounds, full-width models). They were **not** reproduced here and
cannot be on this machine: only the bundled slices are available (CIFAR-10: 5,085
train / 1,017 test; Tiny-ImageNet: 200 train images per class and the full official
validation split; DTD: 12 photos per class),
and VGG-16 runs at a quarter of its channel width: at full width the fast CPU path
trains 71 images/s (docs/THROUGHPUT.md), so one epoch of the slice takes ~72 s and
the VGG suite's 4 x 40 epochs would take ~3.2 h instead of ~25 min. What *is*
measured is the shape of the result on real pixels: federated vs centralized at
equal epochs, independent vs label-skewed local data, and the four forming
strategies, through the real engine (Dask LocalCluster, `grid.workers=2,
grid.threads_per_worker=1`, FedAvg, every client every round, one local epoch per
round) with **exact BatchNorm statistics** at every evaluation: the coordinator
re-estimates the global model's statistics on 2,048 training images after each
server step (`server.bn_mode=recalibrate`, the default); where a run used the
clients' pooled exact moments instead (`pooled`) its section says so. Earlier
versions of this page averaged the clients' running averages, which collapsed the
evaluation of MobileNetV3 to chance (every image got the same logits; the round
table now records the logit spread and flags such a collapse) and held VGG-16 back
in its first rounds. The centralized baseline
trains the same model from the same initial weights with the same optimiser, lr and
batch size, one epoch over all training data per "round", evaluated after each.

Settings (`benchmarks/accuracy.py`), and where they differ from the study:

| suite | model | data | clients, rounds | local training | study |
|---|---|---|---|---|---|
| vgg | VGG-16, CIFAR head, batch norm, **width 0.25** (1/16 of the FLOPs) | CIFAR-10 slice, 5,085 / 1,017; iid, balanced(0.8), stratified(0.8), dirichlet(0.5) | 10, 40 | SGD momentum 0.9, lr 0.05, batch 32, no augmentation | width 1, 50 clients, lr 0.01, batch 10, augmentation, 90/150 rounds |
| vgg-forming | as vgg, iid data; static, dynamic, stochastic, hybrid(0.5) forming | as vgg | 10, 16 | as vgg | as vgg |
| mobilenet | MobileNetV3-**Small**, width 1 | medium Tiny-ImageNet: 40,000 train (200 per class) / 10,000 (the official validation split), 64x64, resident on the workers | 10 (125 local steps each per round), 8 | Adam **lr 0.001, batch 32** (the study's), no augmentation | MobileNetV3 (Large in our presets), 10 / 5 clients, 100,000 images, 80/60 rounds |
| texture | VGG-11, width 0.25 | DTD slice: fragments 128 px, stride 64, rotations 0/90, standardized, resized to 32 px; 5,078 / 1,080, split by photo | 5, 16 | SGD momentum 0.9, lr 0.05, batch 32 | the study's fragments were 256 px of 654 large photos (4.5 M fragments) |

"""


TARGET_NOTE = """The targets come from the study's shape of results: federated training on
independent local data should reach at least 0.9x the accuracy of centralized
training after the same number of epochs, and label-skewed local data (balanced,
dirichlet) should end below independent data. Compared are the means of the last
three evaluations of single runs (one seed), as single rounds swing by several points.
"""

#: Fixed reading of the setting (no measured numbers: those are generated below).
WHY_FEDAVG_LAGS = """FedAvg lags centralized training most in the first epochs:
with C clients and one local epoch per round, each client takes d / B local steps
per round and the server averages them, so one federated epoch moves the model about
as far as d / B steps of C-times larger batches, while the centralized epoch takes C
times as many steps. The gap closes as both approach what the data can give (the
epoch-by-epoch ratios above, from the same runs). Fewer clients, each with more
local steps per round, narrow the early gap."""


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def findings(rows: dict, curves: dict) -> str:
    """The findings section, generated from the recorded accuracy runs."""
    out = ["### Findings of the recorded runs (generated from benchmarks/out/accuracy)", ""]
    for suite in dict.fromkeys(s for s, _ in rows):
        iid, cen = rows.get((suite, "iid static")), rows.get((suite, "centralized"))
        if not (iid and cen):
            continue
        fc, cc = curves.get((suite, "iid static")), curves.get((suite, "centralized"))
        ratio = iid["tail_acc"] / cen["tail_acc"] if cen.get("tail_acc") else float("nan")
        line = (f"- **{suite}: federated iid vs centralized** ({iid['model']} width "
                f"{iid['width']:g}, {iid['clients']} clients, {iid['rounds']} epochs): "
                f"{_pct(iid['tail_acc'])} vs {_pct(cen['tail_acc'])} (mean of the last 3 "
                f"rounds), ratio {ratio:.2f}.")
        if fc and cc and len(fc) == len(cc) and len(fc) >= 8:
            step = max(1, len(fc) // 5)
            marks = list(range(step, len(fc) + 1, step))
            if marks[-1] != len(fc):
                marks.append(len(fc))
            pairs = []
            for e in marks:
                f3 = sum(fc[max(0, e - 3):e]) / len(fc[max(0, e - 3):e])
                c3 = sum(cc[max(0, e - 3):e]) / len(cc[max(0, e - 3):e])
                pairs.append(f"{e}: {f3 / c3:.2f}" if c3 > 0 else f"{e}: n/a")
            line += " Ratio at epoch (3-round means) " + ", ".join(pairs) + "."
        out.append(line)
    for suite in dict.fromkeys(s for s, _ in rows):
        iid = rows.get((suite, "iid static"))
        skew = [(n, r) for (s, n), r in rows.items()
                if s == suite and n.startswith(("balanced", "stratified", "dirichlet"))]
        if iid and skew:
            out.append(f"- **{suite}: label skew** (static forming, {iid['rounds']} rounds): "
                       + ", ".join(f"{n} {_pct(r['tail_acc'])}" for n, r in skew)
                       + f" against iid {_pct(iid['tail_acc'])} (means of the last 3 rounds).")
    forming = sorted(((n, r) for (s, n), r in rows.items() if s.startswith("vgg-forming")),
                     key=lambda nr: -nr[1]["tail_acc"])
    if forming:
        out.append(f"- **Forming strategies** (iid, {forming[0][1]['rounds']} rounds, means of "
                   "the last 3 rounds): " + ", ".join(f"{n.removeprefix('iid ')} "
                                                     f"{_pct(r['tail_acc'])}" for n, r in forming)
                   + ". Single runs with one seed: differences of a few points are within the "
                   "round-to-round swing of the curves.")
    mob = [(n if s == "mobilenet" else f"{n} ({r['clients']} clients)", r)
           for (s, n), r in rows.items() if s.startswith("mobilenet")]
    if mob:
        out.append("- **MobileNetV3-Small on the medium Tiny-ImageNet set** (200 training images "
                   "per class, 200 classes; chance is 0.5 %; means of the last 3 rounds): "
                   + ", ".join(f"{n} {_pct(r['tail_acc'])} (best {_pct(r['best_acc'])})"
                               for n, r in mob) + ".")
        cen_curve = curves.get(("mobilenet", "centralized"))
        iid_curve = curves.get(("mobilenet", "iid static"))
        for (s, n), r in rows.items():
            if not (s.startswith("mobilenet-") and cen_curve is not None):
                continue
            e = r["rounds"]  # compare at the same epoch: means of the epochs up to e
            cen_e = sum(cen_curve[max(0, e - 3):e]) / len(cen_curve[max(0, e - 3):e])
            line = (f"  Federated over {r['clients']} clients ({s}, {e} epochs): "
                    f"{_pct(r['tail_acc'])} = {r['tail_acc'] / cen_e:.2f}x centralized at "
                    f"epochs {max(1, e - 2)}-{e} ({_pct(cen_e)})")
            if iid_curve is not None and len(iid_curve) >= e:
                iid_e = sum(iid_curve[max(0, e - 3):e]) / len(iid_curve[max(0, e - 3):e])
                line += f"; 10 clients at the same epochs: {_pct(iid_e)}"
            out.append(line + ".")
    out += ["", WHY_FEDAVG_LAGS, ""]
    return "\n".join(out)


#: Note above a section kept from the previous RESULTS.md (piece not re-run since).
KEPT_NOTE = ("*Kept from the previous assembly of this page: this piece was not re-run "
             "since (its output is not in benchmarks/out/).*")
KEPT_ACCURACY_NOTE = (" *It was measured before the BatchNorm evaluation fix (the clients' "
                      "running averages were averaged), so its accuracies are not comparable "
                      "with the sections above.*")


def previous_sections(text: str) -> dict:
    """``'## title'`` sections of an earlier RESULTS.md: title -> body (without the title
    line and without an earlier kept-note)."""
    out, title, body = {}, None, []
    for line in text.splitlines():
        if line.startswith("## "):
            if title is not None:
                out[title] = "\n".join(body).strip()
            title, body = line[3:].strip(), []
        elif title is not None and not line.startswith("*Kept from the previous assembly"):
            body.append(line)
    if title is not None:
        out[title] = "\n".join(body).strip()
    return out


def assemble(previous: str = "") -> str:
    """RESULTS.md text from the pieces in benchmarks/out/; a piece without output keeps
    its section of ``previous`` (the page as it was), marked as kept."""
    kept = previous_sections(previous)
    parts = [INTRO]
    rows, curves = _summary_rows()
    parts.append("### The study's numbers next to this machine's\n\n" + _study_table(rows) + "\n")
    targets = []
    for name in ACCURACY:
        path = OUT / f"{name}.out"
        if path.is_file():
            targets += [ln[2:] for ln in path.read_text().splitlines()
                        if ln.startswith("- PASS") or ln.startswith("- FAIL")]
    if targets:
        parts.append("### Targets (pass/fail as measured; not tuned to pass)\n\n"
                     + "\n".join(f"- {t}" for t in targets) + "\n\n" + TARGET_NOTE)
    parts.append(findings(rows, curves))
    for name in PIECES:
        out, meta_path = OUT / f"{name}.out", OUT / f"{name}.json"
        parts.append(f"## {TITLES[name]}\n")
        if (not (out.is_file() and meta_path.is_file()) and TITLES[name] in kept
                and not kept[TITLES[name]].startswith("Not run in this assembly")):
            note = KEPT_NOTE + (KEPT_ACCURACY_NOTE if name in ACCURACY else "")
            parts.append(note + "\n\n" + kept[TITLES[name]] + "\n")
            continue
        if not (out.is_file() and meta_path.is_file()):
            parts.append(f"Not run in this assembly. Reproduce: `python {shlex.join(PIECES[name])}`"
                         + (f"  \nEarlier measurements: {EARLIER[name]}." if name in EARLIER else "")
                         + "\n")
            continue
        meta = json.loads(meta_path.read_text())
        parts.append(f"Reproduce: `{meta['command']}`  \n"
                     f"Ran {meta['started']} to {meta['finished']} ({meta['wall_s']:.0f} s wall, "
                     f"exit code {meta['returncode']}"
                     + (f", commit {meta['commit']}" if meta.get("commit") else "")
                     + f") on: {machine_line(meta['machine'])}.\n"
                     + (f"\n{meta['note']}\n" if meta.get("note") else ""))
        text = out.read_text()
        if name.startswith("accuracy-"):
            parts.append(_accuracy_section(text) + "\n")
            curves = [ln.strip() for ln in text.splitlines()
                      if re.match(r"^\[[\w-]+\] .+: final", ln)]
            if curves:
                parts.append("Global test accuracy (%) after each round/epoch:\n\n```\n"
                             + "\n".join(curves) + "\n```\n")
        else:
            body = "\n".join(ln for ln in text.strip().splitlines()
                             if not ln.startswith("WARNING:absl")).strip()
            if len(body) > 12000:
                body = "...\n" + body[-12000:]
            parts.append("```\n" + body + "\n```\n")
            parts += [f"![{pathlib.Path(f).stem}]({f})\n" for f in FIGURES.get(name, [])]
    return "\n".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=None,
                    help="comma-separated pieces: " + ", ".join(PIECES))
    ap.add_argument("--skip-perf", action="store_true", help="skip the performance benchmarks")
    ap.add_argument("--assemble", action="store_true",
                    help="only rebuild docs/RESULTS.md from benchmarks/out/")
    ap.add_argument("--rounds", type=int, default=None, help="passed to accuracy.py")
    ap.add_argument("--width", type=float, default=None, help="passed to accuracy.py")
    ap.add_argument("--nice", action="store_true", help="run pieces under nice -n 10")
    ap.add_argument("--accuracy-args", default="",
                    help="more arguments for accuracy.py pieces, one shell-quoted string, e.g. "
                    "\"--reuse 'iid static,centralized'\"")
    args = ap.parse_args(argv)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        bad = [n for n in names if n not in PIECES]
        if bad:
            print(f"error: --only {bad[0]!r} is unknown: allowed are {', '.join(PIECES)}",
                  file=sys.stderr)
            return 2
    else:
        names = list(PIECES)
    if args.skip_perf:
        names = [n for n in names if n not in PERF]
    failed = 0
    if not args.assemble:
        for name in names:
            extra = []
            if name in ACCURACY:
                extra += ["--rounds", str(args.rounds)] if args.rounds else []
                extra += ["--width", str(args.width)] if args.width else []
                extra += shlex.split(args.accuracy_args)
            failed += run_piece(name, extra, args.nice) != 0
    RESULTS.write_text(assemble(RESULTS.read_text() if RESULTS.is_file() else ""))
    print(f"wrote {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
