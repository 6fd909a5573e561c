"""Run the performance benchmarks and the accuracy suites; assemble docs/RESULTS.md.

    python benchmarks/run_all.py                       # everything (many hours on 2 cores)
    python benchmarks/run_all.py --skip-perf           # only the accuracy suites
    python benchmarks/run_all.py --only throughput,accuracy-vgg
    python benchmarks/run_all.py --assemble            # rebuild RESULTS.md from benchmarks/records/
    python benchmarks/run_all.py --refresh --only precision  # one piece's block in the page
    # long runs from a snapshot worktree of a commit, records into this checkout:
    python benchmarks/run_all.py --only accuracy-vgg --no-assemble --out ../sci/out \
        --records "$PWD/../main/benchmarks/records"
    python benchmarks/run_all.py --keep --only accuracy-vgg --out ../sci/out  # partial results

Each piece runs as a subprocess (``nice -n 10`` with ``--nice``); its printed output
goes to ``<out>/<piece>.out`` and ``<piece>.json`` records the command, the commit,
start/end, wall time (earlier interrupted attempts added up) and the machine. When a
piece ends, those two files and the small result files its section needs (an accuracy
suite's ``results.json``, see ``record_files``) are copied into ``benchmarks/records/``,
which is committed: run folders and checkpoints stay in ``<out>``, and a record outlives
the machine that wrote it. The accuracy suites run every configuration with seeds 0,
1, 2 and resume their runs from checkpoints when re-run after an interruption.
``docs/RESULTS.md`` is assembled from the kept records alone (tables, ratios over seeds
and figures generated here, see ``accuracy_report.py``); a piece without an accepted
record (not run, running, failed, or recorded from a modified tree) shows only its
command. Running pieces refuses a modified tree (new records and figures excepted) and assembling
refuses any change: every number comes from a commit. While the page is still hand-merged
(earlier blocks' records were lost), ``--refresh`` replaces only the named pieces' blocks
in it (each found by its ``Command:`` line) from their committed records.
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
from typing import Optional

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import accuracy_report  # noqa: E402  (the accuracy pieces' tables and figures)

from fedjax_grid.atomic_write import write_atomic  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
#: The records the page is assembled from, committed: each piece's ``.json`` and ``.out``
#: and the small result files listed in KEPT, copied here from OUT when the piece ends
#: (OUT keeps the bulky run folders and checkpoints, and is lost with the machine).
RECORDS = REPO / "benchmarks" / "records"
#: what pieces write into the tree while they run (their records, the figures some of them
#: draw into docs/results): running more pieces does not wait for these to be committed
PIECE_OUTPUTS = ("benchmarks/records", "docs/results")
RESULTS = REPO / "docs" / "RESULTS.md"

#: The accuracy suites, every configuration with seeds 0, 1, 2 (mean +- sd, per seed).
SEEDS = ["--seeds", "0,1,2"]
PERF = {
    "throughput": ["benchmarks/throughput.py", "--steps", "5"],
    # the fast path's patches bound (fast_paths.PATCHES_MAX_SPATIAL), re-checked on this CPU
    "patches-bound": ["benchmarks/throughput.py", "--models", "vgg16,mobilenet_v3_small",
                      "--paths", "fast", "--patches-max", "2,4,8,16,32", "--steps", "5"],
    "data_reads": ["benchmarks/data_reads.py", "--batches", "50"],
    "fragments": ["benchmarks/fragments.py"],
    "engine_overhead": ["benchmarks/engine_overhead.py"],
    # every policy once per seed (each seed its own slow-downs): ratios over 3 seeds
    "async-vs-sync-digits": ["benchmarks/async_vs_sync.py", "--data", "digits", "--budget", "100",
                             "--seeds", "1,2,3"],
    "async-vs-sync-cifar10": ["benchmarks/async_vs_sync.py", "--data", "cifar10", "--budget", "240",
                              "--target", "0.25", "--seeds", "1,2,3"],
    # every setting on seeds 0, 1, 2; each finished run is kept in {out} (an interrupted
    # piece runs only the missing ones) and its curves in the record
    "codecs": ["benchmarks/compression.py", *SEEDS, "--compute-s", "2.0",
               "--runs-file", "{out}/compression-runs.json", "--out", "{out}/compression.json"],
    "cpu-bound": ["benchmarks/cpu_bound.py"],
    # needs the optional extra: pip install -e ".[compare]" (Flower); else exit 2
    "vs-flower": ["benchmarks/vs_flower.py", "--json", "{out}/vs_flower-raw.json"],
    # training.precision: client throughput f32 vs bf16, then accuracy over 3 seeds
    "precision": ["benchmarks/precision.py"],
    # 20 rounds: at 10 the curves still rise and a lag in learning speed reads as a loss;
    # the runs are kept in {out} and extended by a larger --rounds
    "precision-accuracy": ["benchmarks/precision.py", "--accuracy", "--seeds", "0,1,2",
                           "--rounds", "20", "--out", "{out}/precision-accuracy"],
    # the same comparison with bf16 on Flax's stock policy (bf16 activations, as on a GPU)
    "precision-accuracy-stock": ["benchmarks/precision.py", "--accuracy", "--seeds", "0,1,2",
                                 "--rounds", "20", "--bf16-path", "stock",
                                 "--out", "{out}/precision-accuracy"],
    # six seeds (0-2 again: the f32 and bf16 runs repeat precision-accuracy's), with a
    # control arm (f32 on the stock conv path): how far a change of rounding alone moves
    # a paired difference
    "precision-accuracy-floor": ["benchmarks/precision.py", "--accuracy", "--seeds", "0,1,2,3,4,5",
                                 "--rounds", "20", "--control",
                                 "--out", "{out}/precision-accuracy"],
    # where a bf16 step's time goes, op by op, and the share of its MACs in bf16 dots
    "bf16-profile": ["benchmarks/bf16_profile.py", "--models", "vgg16,mobilenet_v3_small"],
    # one step's gradient in bf16 against f32's, on the fast and on the stock path
    "bf16-gradients": ["benchmarks/bf16_gradients.py"],
    # one client per compiled step vs vmapped clients vs more XLA threads per task
    "client-tasks": ["benchmarks/client_tasks.py"],
    # compile once per grid: round 1 against a steady round, cold and warm caches
    "first-round": ["benchmarks/first_round.py"],
    # the grid's own CPU: an idle cluster with Dask's defaults vs the engine's settings,
    # then every thread's CPU per steady 20-client round
    "grid-idle-cpu": ["benchmarks/grid_idle_cpu.py", "--reps", "3", "--seconds", "15"],
    "thread-cpu": ["benchmarks/thread_cpu.py", "--clients", "20", "--rounds", "14"],
    # cold start of real `dask scheduler` / `dask worker` grids: 4 and 32 workers
    "startup-scale": ["benchmarks/startup_scale.py"],
    # root: the modelled grid's claims re-measured on emulated desktops (namespaces, tbf, cgroups)
    "emulated-codec": ["benchmarks/modelled_vs_emulated.py", "--claims", "codec",
                       "--seeds", "0", "1", "2", "--target", "0.9"],
    "emulated-frozen": ["benchmarks/modelled_vs_emulated.py", "--claims", "frozen",
                        "--seeds", "0", "1", "2"],
    "emulated-async": ["benchmarks/modelled_vs_emulated.py", "--claims", "async",
                       "--seeds", "0", "1", "2", "--target", "0.97"],
    "emulated-linkdrop": ["benchmarks/modelled_vs_emulated.py", "--claims", "linkdrop",
                          "--seeds", "0", "1", "2"],
    # root: fixed grid parameters vs `auto` on the emulated home and laptop grids
    "grid-tuning": ["benchmarks/grid_tuning.py", "--profiles", "home", "laptops",
                    "--seeds", "0", "1", "2", "--settings", "default", "d30-o1", "auto",
                    "--target", "0.97", "--rounds", "8"],
}


def resume_from(suite: str) -> list[str]:
    """accuracy.py's arguments that take the finished runs of a suite from its committed
    record (``{records}``: the records folder): a suite longer than one machine's life
    goes on, on the next machine, from the last record kept (``--keep``) and committed."""
    return ["--resume-records", f"{{records}}/accuracy/{suite}/results.json"]


ACCURACY = {
    # to the centralized plateau (>= 30 epochs, at most 45), every run to the same epochs
    "accuracy-vgg": ["benchmarks/accuracy.py", "--suite", "vgg", *SEEDS, "--rounds", "30",
                     "--plateau", "--max-rounds", "45", *resume_from("vgg")],
    # one seed to the plateau (an epoch costs ~7 min per configuration here), the study's
    # two settings: 10 clients independent, 5 clients balanced (the presets' reading)
    "accuracy-mobilenet": ["benchmarks/accuracy.py", "--suite", "mobilenet", "--runs",
                           "centralized,iid static,stratified(0.9) 5 clients", "--seeds", "0",
                           "--rounds", "10", "--plateau", "--max-rounds", "40",
                           *resume_from("mobilenet")],
    # the same configurations, seeds 1 and 2, the first 10 epochs (seed 0: the run above)
    "accuracy-mobilenet-seeds": ["benchmarks/accuracy.py", "--suite", "mobilenet", "--runs",
                                 "centralized,iid static,stratified(0.9) 5 clients",
                                 "--seeds", "1,2", "--rounds", "10", "--tag=-10e",
                                 *resume_from("mobilenet-10e")],
    "accuracy-vgg-forming": ["benchmarks/accuracy.py", "--suite", "vgg-forming", *SEEDS],
    "accuracy-texture": ["benchmarks/accuracy.py", "--suite", "texture", *SEEDS],
    # FedAvg over 2 clients instead of 10: how much of the 10-client lag is the clients' count
    "accuracy-mobilenet-2clients": ["benchmarks/accuracy.py", "--suite", "mobilenet", "--runs",
                                    "iid static", "--set", "partition.num_clients=2",
                                    "--tag=-2clients", "--rounds", "3", *SEEDS],
}
#: Which reading of the study's "balanced" matches its 0.988 ratio (figure in docs/results).
STUDY_PIECES = {
    # 8 rounds; iid, balanced(0.8), stratified(0.8) are the first 8 rounds of the VGG suite's runs
    "calibration": ["benchmarks/balanced_calibration.py", *SEEDS, "--readings",
                    "balanced,stratified"],
    # FedAvg vs SCAFFOLD vs FedNova on Dirichlet(0.1) clients, digits and the CIFAR-10 slice
    "client-algorithms": ["benchmarks/client_algorithms.py", "--rows-file",
                          "{out}/client-algorithms-rows.json"],
    # the study's four presets at CPU scale (2 rounds, width 0.25, 10 clients), 3 seeds
    "paper-table": ["benchmarks/paper_table.py", "--rounds", "2", "--width", "0.25",
                    "--clients", "10", "--max-test-examples", "2000", *SEEDS],
}
PIECES = {**PERF, **ACCURACY, **STUDY_PIECES}

TITLES = {
    "throughput": "Train-step throughput (XLA:CPU, fast vs stock conv path)",
    "patches-bound": "The fast path's patches bound on this CPU (benchmarks/throughput.py "
                     "--patches-max)",
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
    "precision-accuracy-floor": "Accuracy in bf16 vs f32, 6 seeds, and the floor of a paired "
                                "difference (benchmarks/precision.py --accuracy --control)",
    "precision-accuracy-stock": "Accuracy in bf16 vs f32, bf16 on Flax's stock path, 3 seeds "
                                "(benchmarks/precision.py --accuracy --bf16-path stock)",
    "bf16-profile": "Where a bf16 train step's time goes on XLA:CPU, op by op "
                    "(benchmarks/bf16_profile.py)",
    "bf16-gradients": "A bf16 gradient against float32's, fast vs stock path "
                      "(benchmarks/bf16_gradients.py)",
    "client-tasks": "Client tasks: vmapped clients and XLA threads (benchmarks/client_tasks.py)",
    "first-round": "Compile once per grid: round 1 vs a steady round (benchmarks/first_round.py)",
    "grid-idle-cpu": "The grid's own CPU: an idle cluster (benchmarks/grid_idle_cpu.py)",
    "thread-cpu": "Where a steady round's CPU goes, thread by thread (benchmarks/thread_cpu.py)",
    "startup-scale": "Start-up at scale: 4 and 32 workers, 64 and 1,000 clients "
                     "(benchmarks/startup_scale.py)",
    "emulated-codec": "Modelled vs emulated grid: quant(3) + delta broadcast on home links",
    "emulated-frozen": "Modelled vs emulated grid: a frozen laptop under the deadline",
    "emulated-async": "Modelled vs emulated grid: asynchronous vs synchronous rounds",
    "emulated-linkdrop": "Modelled vs emulated grid: a link that drops mid-broadcast and mid-upload",
    "grid-tuning": "Grid parameters from what the grid shows: fixed vs `auto` on the emulated "
                   "home and laptop grids (benchmarks/grid_tuning.py)",
    "accuracy-mobilenet-2clients": "Accuracy: MobileNetV3-Small federated over 2 clients "
                                   "instead of 10",
    "paper-table": "The study's table at CPU scale (benchmarks/paper_table.py)",
    "accuracy-vgg": "Accuracy: VGG-16 on the CIFAR-10 slice, data distributions vs centralized",
    "accuracy-vgg-forming": "Accuracy: VGG-16 on the CIFAR-10 slice, the four forming strategies",
    "accuracy-mobilenet": "Accuracy: MobileNetV3-Small on the medium Tiny-ImageNet set",
    "accuracy-mobilenet-seeds": "Accuracy: MobileNetV3-Small, seeds 1 and 2, first 10 epochs",
    "accuracy-texture": "Accuracy: texture fragments of the DTD slice",
    "calibration": "Calibration: which reading of the study's \"balanced\" matches its numbers",
    "client-algorithms": "Client algorithms on Dirichlet(0.1) clients: FedAvg vs SCAFFOLD vs FedNova",
}

#: Figures a non-accuracy piece draws (shown under its output).
FIGURES = {"async-vs-sync-digits": ["results/async_vs_sync_digits.png"],
           "async-vs-sync-cifar10": ["results/async_vs_sync_cifar10.png"],
           "codecs": ["results/compression.png"]}

#: Why an accuracy piece runs the seeds and epochs it runs (shown under its provenance).
SCOPE = {
    "accuracy-mobilenet": "One seed to the plateau: a configuration costs more than two hours "
                          "per seed on this machine (seed 0's three runs to the plateau took "
                          "4.7 h), so the first 10 epochs run over three seeds (the section "
                          "\"Accuracy: MobileNetV3-Small, seeds 1 and 2, first 10 epochs\").",
    "accuracy-mobilenet-seeds": "The first 10 epochs over three seeds: seeds 1 and 2 run here, "
                                "seed 0's plateau run (the section \"Accuracy: MobileNetV3-Small "
                                "on the medium Tiny-ImageNet set\") cut to its first 10 epochs.",
}

#: Where a performance piece's earlier measurements are written down (shown when it was not run).
EARLIER = {
    "throughput": "[THROUGHPUT.md](THROUGHPUT.md)",
    "data_reads": "the docstring of `benchmarks/data_reads.py`",
    "fragments": "the docstring of `benchmarks/fragments.py`",
}

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


def git_state(repo: pathlib.Path = REPO, ignore: tuple = ()) -> tuple[str, bool]:
    """(short HEAD commit or 'unknown', whether the tree differs from it: modified, staged
    or untracked-not-ignored files, except those under the repository paths ``ignore``)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=repo,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "-uall"], cwd=repo,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown", True
    changed = [ln[3:].strip('"') for ln in status.stdout.splitlines() if ln.strip()]
    changed = [c for c in changed if not any(c.startswith(d.rstrip("/") + "/") for d in ignore)]
    return head or "unknown", bool(changed) or status.returncode != 0


def dirty_refusal(what: str, ignore: tuple = ()) -> str:
    """'' on a clean tree (changes under ``ignore`` allowed), else the one-line refusal."""
    commit, dirty = git_state(ignore=ignore)
    if not dirty:
        return ""
    return (f"error: refusing to {what} from a modified tree (commit {commit} plus changes, "
            "see `git status`): commit or stash first, every number must come from a commit")


# ---------------------------------------------------------------- running

def shown_command(name: str, extra: tuple = ()) -> str:
    """A piece's command as the page shows it ("{out}" in its arguments, the folder it writes
    to, shown as benchmarks/out)."""
    return "python " + shlex.join([a.replace("{out}", "benchmarks/out")
                                   .replace("{records}", "benchmarks/records") for a in PIECES[name]]
                                  + list(extra))


def run_piece(name: str, extra: list[str], nice: bool) -> int:
    """Run one piece as a subprocess; write <out>/<name>.out and .json (the .json first with
    ``returncode`` null while it runs; a re-run after an interruption adds the earlier
    attempts' wall time to ``wall_s_earlier``)."""
    OUT.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, *(a.replace("{out}", str(OUT)).replace("{records}", str(RECORDS))
                             for a in PIECES[name]), *extra]
    shown = shown_command(name, extra)
    if nice:
        cmd = ["nice", "-n", "10", *cmd]
    commit, _ = git_state()
    meta_path = OUT / f"{name}.json"
    earlier = 0.0
    # an interrupted attempt: this machine's, else the one whose partial record was kept
    for path in (meta_path, RECORDS / f"{name}.json"):
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError, TypeError):
            continue
        if old.get("command") == shown and old.get("returncode") != 0:
            earlier = float(old.get("wall_s_earlier", 0.0)) + float(old.get("wall_s") or 0.0)
            kept_out = RECORDS / f"{name}.out"
            if path != meta_path and kept_out.is_file() and not (OUT / f"{name}.out").is_file():
                (OUT / f"{name}.out").write_bytes(kept_out.read_bytes())  # appended to below
        break
    meta = {"piece": name, "command": shown, "machine": machine_info(), "commit": commit,
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "returncode": None, "wall_s": None, "wall_s_earlier": earlier, "out": str(OUT)}
    meta_path.write_text(json.dumps(meta, indent=1))
    print(f"== {name}: {shown}", flush=True)
    t = time.perf_counter()
    env = dict(os.environ, FEDJAX_GRID_BENCH_OUT=str(OUT))
    with open(OUT / f"{name}.out", "a" if earlier else "w") as f:  # an interrupted run: append
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:  # the wall time so far, for a run that gets killed
            time.sleep(10)
            meta["wall_s"] = round(time.perf_counter() - t, 1)
            meta_path.write_text(json.dumps(meta, indent=1))
    meta.update(finished=datetime.datetime.now().isoformat(timespec="seconds"),
                wall_s=round(time.perf_counter() - t, 1), returncode=proc.returncode)
    meta_path.write_text(json.dumps(meta, indent=1))
    kept = keep_records(name)
    print(f"   exit {proc.returncode} after {meta['wall_s']:.0f} s -> {name}.out; "
          f"{len(kept)} record file(s) kept in {relative(str(RECORDS))}", flush=True)
    return proc.returncode


#: piece -> more files (relative to OUT) that its section is assembled from
KEPT = {"vs-flower": ["vs_flower-raw.json"], "calibration": ["calibration/results.json"],
        "codecs": ["compression.json", "compression-runs.json"],
        "client-algorithms": ["client-algorithms-rows.json"]}


def record_files(name: str) -> list[str]:
    """The files (relative to OUT) a piece's section is assembled from: its ``.json`` and
    ``.out``, its suite's ``results.json`` and those in KEPT; no run folders, no checkpoints."""
    files = [f"{name}.json", f"{name}.out", *KEPT.get(name, [])]
    if name in SUITE_OF:
        files.append(f"accuracy/{SUITE_OF[name]}/results.json")
    return files


def keep_records(name: str) -> list[str]:
    """Copy a piece's record files that exist from OUT into RECORDS (each written to a
    temporary name and renamed: an interrupted copy leaves the old record whole).
    Returns the files copied, relative to RECORDS."""
    kept = []
    if OUT.resolve() == RECORDS.resolve():
        return kept
    for rel in record_files(name):
        src = OUT / rel
        if not src.is_file():
            continue
        dst = RECORDS / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".part")
        tmp.write_bytes(src.read_bytes())
        os.replace(tmp, dst)
        kept.append(rel)
    return kept


#: accuracy piece -> the suite folder its results.json is in (benchmarks/out/accuracy/<suite>)
SUITE_OF = {"accuracy-vgg": "vgg", "accuracy-mobilenet": "mobilenet",
            "accuracy-mobilenet-seeds": "mobilenet-10e", "accuracy-vgg-forming": "vgg-forming",
            "accuracy-texture": "texture", "accuracy-mobilenet-2clients": "mobilenet-2clients"}

#: a piece of seeds run for the first epochs only -> (the suite whose longer runs give the
#: other seeds' first epochs, epochs): shown together, cut to those epochs
FIRST_EPOCHS = {"accuracy-mobilenet-seeds": ("mobilenet", 10)}

#: The study's four settings (ITP RAS, GRID'2023; full data sets, full-size models), the
#: preset that runs each at full scale (benchmarks/paper_table.py row) and the suite run here
#: that stands for it: (label, study nodes/lr/batch/epochs, accuracy %, paper_table row,
#: suite, run here)
STUDY = [("VGG-16, CIFAR-10, independent", "50 nodes, lr 0.01, batch 10, 90 epochs", 86.21,
          "vgg-independent", "vgg", "iid static"),
         ("VGG-16, CIFAR-10, balanced (0.8)", "50 nodes, lr 0.01, batch 10, 150 epochs", 85.18,
          "vgg-balanced", "vgg", "stratified(0.8) static"),
         ("MobileNetV3, Tiny-ImageNet, independent", "10 nodes, lr 0.001, batch 32, 80 epochs",
          50.08, "mobilenet-independent", "mobilenet", "iid static"),
         ("MobileNetV3, Tiny-ImageNet, balanced (0.9)", "5 nodes, lr 0.001, batch 32, 60 epochs",
          40.31, "mobilenet-balanced", "mobilenet", "stratified(0.9) 5 clients")]

#: Full-scale estimate inputs: the model of each study row whose training images/s on one
#: 2-core desktop like this machine (the fast XLA:CPU path, batch 32) the throughput
#: record gives (:func:`measured_rates`), evaluation taken as 3x the training rate (forward
#: only); (train images, test images, nodes, epochs) of each study row.
RATE_MODEL = {"vgg": "vgg16", "mobilenet": "mobilenet_v3_large"}
FULL = {"vgg-independent": ("vgg", 50_000, 10_000, 50, 90),
        "vgg-balanced": ("vgg", 50_000, 10_000, 50, 150),
        "mobilenet-independent": ("mobilenet", 100_000, 10_000, 10, 80),
        "mobilenet-balanced": ("mobilenet", 100_000, 10_000, 5, 60)}
FULL_COMMAND = ("python benchmarks/paper_table.py --cifar10 cifar-10-binary.tar.gz "
                "--tiny-imagenet tiny-imagenet-200.zip --scheduler tcp://SCHEDULER:8786")


def measured_rates(records: Optional[pathlib.Path] = None) -> dict:
    """suite -> training images/s of ``RATE_MODEL``'s model on the fast path, read from the
    throughput piece's record (``throughput.out``'s table: ``| model | input | classes |
    path | images/s | ...``); a suite whose row is missing is left out."""
    path = (records or RECORDS) / "throughput.out"
    text = path.read_text() if path.is_file() else ""
    rates = {}
    for suite, model in RATE_MODEL.items():
        m = re.search(rf"^\| {re.escape(model)} \| [^|]+ \| [^|]+ \| fast \| ([\d.]+) \|", text,
                      re.M)
        if m:
            rates[suite] = float(m.group(1))
    return rates


def rates_text(rates: dict) -> str:
    """The estimate's inputs in words, from :func:`measured_rates`: 'VGG-16 width 1 at 32x32
    31.0 img/s, MobileNetV3-Large at 64x64 66.5 img/s at batch 32', then the throughput
    piece's section title."""
    names = {"vgg": "VGG-16 width 1 at 32x32", "mobilenet": "MobileNetV3-Large at 64x64"}
    if not rates:
        return "no throughput record: no estimate"
    shown = ", ".join(f"{names[k]} {v:.1f} img/s" for k, v in rates.items())
    return f'{shown} at batch 32, the section "{TITLES["throughput"]}"'


def full_scale_hours(row: str, rates: dict) -> tuple[float, float]:
    """(hours on a grid of one such desktop per node, hours on this one machine) of the study's
    row at full scale: epochs x (local set / rate + test set / (3 x rate)), compute only;
    ``rates``: suite -> training images/s (:func:`measured_rates`)."""
    model, train, test, nodes, epochs = FULL[row]
    rate = rates[model]
    evaluation = test / (3 * rate)
    return (epochs * (train / nodes / rate + evaluation) / 3600,
            epochs * (train / rate + evaluation) / 3600)


# ---------------------------------------------------------------- assembling

_ABS = re.compile(r"(?<![\w.~-])/(?:root|home|work|tmp|mnt|srv|var|opt|Users|private)"
                  r"(?:/[^\s`'\"|,;:()\[\]]+)+")


def relative(text: str, out: Optional[str] = None) -> str:
    """``text`` without absolute paths of this machine: under the repository (or the folder
    the pieces wrote to, ``out`` if given: a record's own) relative to it, any other
    absolute path reduced to its name."""
    roots = [(OUT, "benchmarks/out"), (RECORDS, "benchmarks/records"), (REPO, "."),
             (REPO.parent / "shared", "../shared")]
    for root, repl in ([(pathlib.Path(out), "benchmarks/out")] if out else []) + roots:
        text = text.replace(str(root) + "/", repl + "/").replace(str(root), repl)
    return _ABS.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def piece_meta(name: str) -> tuple[Optional[dict], str]:
    """(meta of a piece's accepted run, '') or (None, why it is not shown)."""
    meta = accuracy_report.load(RECORDS / f"{name}.json")
    if meta is None or not (RECORDS / f"{name}.out").is_file():
        return None, "not run"
    commit = str(meta.get("commit") or "unknown")
    if "dirty" in commit or commit == "unknown":
        return None, (f"its recorded run (commit {commit.split('+')[0]} plus changes) was not "
                      "made from a clean commit; re-run it")
    if meta.get("returncode") is None:
        if name in SUITE_OF and (RECORDS / "accuracy" / SUITE_OF[name] / "results.json").is_file():
            return dict(meta, partial=True), ""  # the runs finished so far, marked as such
        return None, f"still running or interrupted (commit {commit}, started {meta.get('started')})"
    if meta.get("returncode") != 0:
        return None, f"its last run failed (exit code {meta.get('returncode')}, commit {commit})"
    return meta, ""


#: A piece's printed seeds, e.g. ``# client algorithms, ..., seeds [0, 1, 2], ...``.
PRINTED_SEEDS = re.compile(r"\bseeds \[(\d+(?:, \d+)*)\]")


def _seeds_of(command: str, output: str = "") -> str:
    """The seeds a piece's command names: ``--seeds 0,1,2``, ``--seeds=0,1,2`` or
    ``--seeds 0 1 2`` (argparse nargs) -> '0, 1, 2'; when it names none, the seeds its
    ``output`` printed last (``seeds [0, 1, 2]``: a script's default), else none."""
    m = re.search(r"--seeds(?:=|\s+)(\d+(?:(?:,|\s+)\d+)*)(?=\s+-|\s*$)", command)
    if m:
        return ", ".join(re.split(r"[,\s]+", m.group(1).strip()))
    printed = PRINTED_SEEDS.findall(output)
    if printed:
        return f"{printed[-1]} (the script's default, as its output names them)"
    return "n/a (no random seeds in this piece)"


def provenance(meta: dict) -> str:
    """Command, commit, seeds, wall time (all attempts), dates and machine of a piece."""
    wall = float(meta.get("wall_s") or 0) + float(meta.get("wall_s_earlier") or 0)
    earlier = (f", of which {meta['wall_s_earlier']:.0f} s in earlier interrupted attempts"
               if meta.get("wall_s_earlier") else "")
    when = (f"ran {meta['started']} to {meta['finished']}" if meta.get("finished")
            else f"started {meta['started']}, not finished (kept when interrupted)")
    out = RECORDS / f"{meta.get('piece')}.out"
    output = out.read_text(errors="replace") if meta.get("piece") and out.is_file() else ""
    return relative(
        f"Command: `{meta['command']}`  \nCommit: {meta['commit']}; seeds: "
        f"{_seeds_of(meta['command'], output)}; wall time {wall:.0f} s ({wall / 3600:.2f} h{earlier}); "
        f"{when} on: {machine_line(meta.get('machine') or {})}.\n")


def accuracy_section(name: str, meta: dict) -> str:
    """Provenance, runs table over seeds, targets, ratios by epoch, figures of one suite."""
    suite = SUITE_OF[name]
    data = accuracy_report.load(RECORDS / "accuracy" / suite / "results.json")
    if name in FIRST_EPOCHS and data is not None:
        other, epochs = FIRST_EPOCHS[name]
        extra = accuracy_report.load(RECORDS / "accuracy" / other / "results.json")
        data = accuracy_report.first_epochs([d for d in (extra, data) if d], epochs, suite)
    if data is None:
        return provenance(meta) + "\nIts records (results.json) are missing: re-run it.\n"
    r0 = data["rows"][0]
    notes = ("\n**Partial**: this piece was still running (or was interrupted) when the page "
             "was assembled; shown are the runs finished by then, each with the seeds it has "
             f"(wall time so far). Finish it with `{meta['command']}` (it resumes).\n"
             if meta.get("partial") else "")
    commits = sorted({str(r["commit"]) for r in data["rows"] if r.get("commit")}
                     - {str(meta.get("commit"))})
    if commits:  # runs taken from an earlier attempt's record (--resume-records)
        notes += ("\nRuns taken from the record of an earlier attempt ran at "
                  + ", ".join(f"commit {c}: " + ", ".join(
                        f"{r['run']} seed {r.get('seed', 0)}" for r in data["rows"]
                        if str(r.get("commit")) == c) for c in commits) + ".\n")
    if name in SCOPE:
        notes += f"\n{SCOPE[name]}\n"
    parts = [provenance(meta) + notes, f"Model {r0['model']} (width {r0['width']:g}); "
             + accuracy_report.plateau_text(data), "", accuracy_report.runs_table(data), ""]
    for target, ok, detail in accuracy_report.targets(data):
        parts.append(f"- {'PASS' if ok else 'FAIL'} (on the mean over seeds): {target}: {detail}")
    by_epoch = accuracy_report.ratio_by_epoch(data, "iid static", "centralized")
    if by_epoch:
        parts += ["", "Federated iid ÷ centralized at epoch (per seed, means of 3 epochs; "
                  f"mean ± sd over seeds): {by_epoch}."]
    fig_dir = RESULTS.parent / "results"
    title = (f"{r0['model']} (width {r0['width']:g}), suite {suite}, seeds "
             f"{', '.join(map(str, data.get('seeds', [])))}: mean ± sd over seeds")
    curves = accuracy_report.curves_figure(data, fig_dir / f"{suite}_curves.png", title)
    runs = [r for r in ("iid static", "stratified(0.8) static", "stratified(0.9) 5 clients",
                        "centralized") if any(row["run"] == r for row in data["rows"])]
    data_note = {"vgg": " (CIFAR-10 slice; the study's figure: CIFAR-100, not available here)",
                 "mobilenet": " (medium Tiny-ImageNet set)"}.get(suite, "")
    study = accuracy_report.study_figure(data, fig_dir / f"{suite}_study_shape.png",
                                         "The study's figure shape" + data_note + ":\n" + title,
                                         runs)
    parts += ["", f"![{suite}: accuracy per epoch](results/{curves.name})", "",
              f"![{suite}: local model loss and global accuracy per round](results/{study.name})",
              "", "Definitions as in the study's figures: *local model loss* is, per round, the "
              "mean over the round's clients of each local model's training cross-entropy "
              "during its local epoch (the records' `tasks.local_loss`; centralized: the "
              "epoch's training loss); *global model accuracy* is the aggregated model's "
              "accuracy on the test split after the round's server step.", "",
              "Mean global test accuracy (%) per epoch over the seeds:", "", "```",
              accuracy_report.text_curves(data), "```", ""]
    return "\n".join(parts)


def calibration_section(meta: dict) -> str:
    data = accuracy_report.load(RECORDS / "calibration" / "results.json")
    if data is None or "settings" not in data:
        return provenance(meta) + "\nIts records (results.json) are missing: re-run it.\n"
    import balanced_calibration
    path = RESULTS.parent / "results" / "balanced_calibration.png"
    balanced_calibration.figure(data["settings"], path)
    reused = sorted({f"{r['reading']}({r['value']:g})" if r["value"] is not None else r["reading"]
                     for r in data["rows"] if r.get("from_suite")})
    note = (f"Settings read from the first {data['rounds']} rounds of the VGG suite's runs of "
            f"the same configuration and seed: {', '.join(reused)}.\n" if reused else "")
    return (provenance(meta) + f"\nVGG-16 width {data['width']:g}, {data['rounds']} rounds, "
            f"seeds {', '.join(map(str, data['seeds']))}; ratios taken per seed against iid of "
            f"the same seed. {note}".rstrip() + "\n\n" + accuracy_report.calibration_table(data)
            + f"\n\n![balanced calibration](results/{path.name})\n")


def study_table(rates: dict) -> str:
    """The study's four settings beside what the suites measured here, and the full scale
    (``rates``: :func:`measured_rates`)."""
    lines = ["| study setting | study: nodes, lr, batch, epochs | study accuracy | here: run, "
             "scale | here: mean of last 3 %, mean ± sd (per seed) | balanced ÷ independent: "
             "study / here (per seed) | full scale, compute estimate: grid of desktops / "
             "this machine |", "|---|---|---|---|---|---|---|"]
    indep = {}
    for label, setting, acc, row, suite, run in STUDY:
        data = accuracy_report.load(RECORDS / "accuracy" / suite / "results.json") or {}
        t = accuracy_report.tails(accuracy_report.curves_of(data)) if data else {}
        rows = [r for r in data.get("rows", []) if r["run"] == run]
        if rows:
            r0 = rows[0]
            here = (f"{run}: {r0['model']} width {r0['width']:g}, {r0['clients']} clients, "
                    f"{r0['rounds']} epochs, the data slice")
            few = len(t[run]) < 3
            value = (f"{accuracy_report.pm(t[run].values())} "
                     f"({accuracy_report.per_seed(t[run])})"
                     + (f"; **only {len(t[run])} seed(s)**" if few else ""))
        else:
            here, value = f"{run}: not run", "n/a"
        if row.endswith("independent"):
            indep[suite] = acc
            ratio = ""
        else:
            r = accuracy_report.ratios(t, run, "iid static")
            ratio = (f"{acc / indep[suite]:.3f} / "
                     + (accuracy_report.ratio_cell(r) if r else "n/a"))
        estimate = "n/a (no throughput record)"
        if FULL[row][0] in rates:
            grid_h, here_h = full_scale_hours(row, rates)
            estimate = f"{grid_h:.1f} h / {here_h:.0f} h"
        lines.append(f"| {label} | {setting} | {acc:.2f} % | {here} | {value} | {ratio} "
                     f"| {estimate} |")
    return "\n".join(lines)


INTRO = """# Measured results

Every number and figure on this page is generated by `python benchmarks/run_all.py`
from the records its pieces wrote (`benchmarks/records/`, committed), and the page is assembled
only from a clean commit (`run_all.py` refuses to run pieces or to assemble from a
modified tree). Each section names its command, the commit it ran at, its seeds and
its wall time; a piece without an accepted record (never run, interrupted, failed, or
recorded from a modified tree) shows only its command. No section is copied from an
earlier page or a hand run. Paths are relative to the repository.

The machine: **2 CPU cores shared with other jobs** (load averages of 4-16 while
these ran; pieces ran under `nice`), no GPU. Wall times vary with that load by up to
several times; a run's numbers do not: it is deterministic for its seed (a run
stopped and resumed from its checkpoint repeats, bitwise, the curve of one that was
not). Accuracies are the mean of a run's last 3 evaluations (single rounds swing by
3-6 points on these test sets); every accuracy and ratio is given over its seeds as
mean ± sample sd with each seed's value, and a target is decided on the mean over
the seeds, with the spread stated. A ratio is taken per seed (the two runs of that
seed), then averaged.

**One GPU, for 15 minutes** (an NVIDIA H200 lent on 2026-12-04): it ran the bf16 checks
of `benchmarks/gpu_check.sh` (the last section; its records are that script's outputs,
kept in `benchmarks/records/gpu-h200/` with the commit and commands, as run_all.py runs
on this machine). The full-scale rows of the study were not run on it (15 minutes hold
no 90-epoch run, and the full data sets are not here): their command and a compute
estimate from this machine's measured step times are in the table below.
"""

ASSEMBLY_NOTE = """*Assembled at commit {commit}.*
"""

SCALE_NOTE = """Scale here: the bundled slices (CIFAR-10: 5,085 train / 1,017 test images;
Tiny-ImageNet: 200 train images per class, 40,000, and the official validation split,
10,000, 64x64), VGG-16 at a quarter of its channel width (1/16 of the FLOPs) with 10
clients, MobileNetV3-**Small** (the study used MobileNetV3; our presets use -Large),
SGD momentum lr 0.05 batch 32 for VGG (the study: lr 0.01, batch 10, with
augmentation), Adam lr 0.001 batch 32 for MobileNet (the study's), no augmentation,
one local epoch per round, every client every round, FedAvg, BatchNorm statistics
re-estimated by the coordinator after each server step. "Balanced (0.8/0.9)" is read
as stratified(share), the presets' reading (see the calibration). The full-scale
estimate is compute only (training at the measured images/s of one such 2-core desktop
per node, {rates}, plus evaluation at 3x that rate), without transfers or stragglers;
on a GPU it was not measured. The single command for all four rows at full scale, on
a Dask grid (or drop `--scheduler` for a LocalCluster, e.g. on a GPU machine):
`{command}` (the study's nodes, epochs, lr, batch and augmentation are the presets'
`paper-*`).
"""


def assemble() -> str:
    """RESULTS.md text from the pieces' records in RECORDS (figures into docs/results)."""
    commit, _ = git_state()
    sections = [(TITLES[name], piece_section(name))  # the science first, then performance
                for name in [*ACCURACY, *STUDY_PIECES, *PERF]]
    sections += [(title, device_section(folder)) for folder, title in DEVICE_RECORDS.items()]
    rates = measured_rates()
    parts = [INTRO, ASSEMBLY_NOTE.format(commit=commit),
             "## The study's table beside this machine's\n", study_table(rates), "",
             SCALE_NOTE.format(command=FULL_COMMAND, rates=rates_text(rates)),
             targets_at_a_glance(sections)]
    for title, body in sections:
        parts += [f"## {title}\n", body]
    return "\n".join(parts)


#: Lines of a section that state a verdict over seeds (the accuracy targets, the calibration).
VERDICT = re.compile(r"^(- (PASS|FAIL) \(on the mean over seeds\): |Closest to the study's )")


def targets_at_a_glance(sections: list[tuple[str, str]]) -> str:
    """'## Targets at a glance': each section's verdict lines (``VERDICT``) under its
    title, in page order; sections without one are left out, and the pieces not in this
    assembly are named."""
    lines = ["## Targets at a glance", "",
             "The accuracy targets and the calibration's verdict, as their sections below state "
             "them (decided on the mean over the seeds, with the spread and the per-seed "
             "values); the performance pieces state their goals in their own output.", ""]
    missing = []
    for title, body in sections:
        if body.startswith("Not in this assembly"):
            missing.append(title)
        for ln in body.splitlines():
            m = VERDICT.match(ln)
            if m and m.group(2):
                lines.append(f"- **{m.group(2)}** ({title}): {ln[m.end():]}")
            elif m:
                lines.append(f"- ({title}): {ln}")
    if missing:
        lines += ["", "Not in this assembly (no accepted record yet): " + "; ".join(missing) + "."]
    return "\n".join(lines) + "\n"


#: Records a lent device wrote (not run_all.py, which runs on this machine): folder of
#: RECORDS -> section title. The folder's README.md names the commit, the machine and each
#: output file's command; the section is that README and the files it names, in its order.
DEVICE_RECORDS = {"gpu-h200": "bf16 on a GPU: one NVIDIA H200, 15 minutes "
                              "(benchmarks/gpu_check.sh)"}

#: Dask's notice when a second cluster on one machine finds the dashboard's port taken.
PORT_NOTICE = re.compile(r"(.*UserWarning: Port \d+ is already in use\.|Perhaps you already "
                         r"have a cluster running\?|Hosting the HTTP server on port \d+ instead"
                         r"|  warnings\.warn\($)")
#: A line of ``precision.py --accuracy``: ``seed 1 bf16: 17.8 20.6 ... 44.6 (57 s)``, the
#: global test accuracy (%) per round of one arm (f32, bf16, or the control f32-stock);
#: a kept run's line ends ``(0 s, rounds 1-20 kept from cifar10-bf16-s1)``.
SEED_CURVE = re.compile(r"^seed (\d+) (f32|bf16|f32-stock): ([\d. ]+?) "
                        r"\(\d+ s(, rounds \d+-\d+ kept from [\w.-]+)?\)$")


def paired_precision_table(text: str) -> str:
    """bf16 - f32 (and the control's f32-stock - f32) paired by seed from ``precision.py
    --accuracy`` output lines: ``precision.print_accuracy_tables`` of the printed
    per-round accuracies; '' when no seed ran both f32 and bf16."""
    import contextlib
    import io

    import precision
    curves = {"f32": {}, "bf16": {}, "f32-stock": {}}
    for line in text.splitlines():
        m = SEED_CURVE.match(line.strip())
        if m:
            curves[m.group(2)][int(m.group(1))] = [float(v) / 100 for v in m.group(3).split()]
    seeds = sorted(set(curves["f32"]) & set(curves["bf16"]))
    if not seeds:
        return ""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        precision.print_accuracy_tables(curves, sorted(curves["f32"]),
                                        min(len(c) for arm in curves.values() for c in arm.values()))
    return (f"From the `seed ...` lines above (seeds {', '.join(map(str, seeds))}, run in both "
            "precisions; the printed per-round accuracies, rounded to 0.1 %), by "
            "`precision.print_accuracy_tables`:\n\n" + buf.getvalue())


def device_section(folder: str) -> str:
    """A lent device's records (RECORDS/folder): its README (provenance, without its title),
    then each output file the README names, verbatim but for Dask's port notices, with a
    paired bf16 - f32 table under an accuracy output; the command alone when missing."""
    readme = RECORDS / folder / "README.md"
    if not readme.is_file():
        return f"Not in this assembly (no `benchmarks/records/{folder}/README.md`).\n"
    text = readme.read_text().strip()
    if text.startswith("# "):
        text = text.split("\n", 1)[1].strip() if "\n" in text else ""
    parts = [relative(text), ""]
    for name in dict.fromkeys(re.findall(r"`([\w.-]+\.out)`", text)):
        path = RECORDS / folder / name
        if not path.is_file():
            parts += [f"`{name}`: missing from the records.", ""]
            continue
        lines = [ln for ln in path.read_text().strip().splitlines() if not PORT_NOTICE.match(ln)]
        body = "\n".join(lines)
        parts += [f"`{name}`:", "", "```", relative(body), "```", ""]
        table = paired_precision_table(body)
        if table:
            parts += [table]
    return "\n".join(parts)


#: Pieces whose output is per-run progress (kept in the record) and then a summary: the
#: section shows the output from the last line that starts so (its last attempt's summary).
SUMMARY_FROM = {"codecs": "VGG-16 CIFAR head; bytes at width",
                "client-algorithms": "# client algorithms, ",
                "bf16-gradients": "jax "}


def piece_section(name: str) -> str:
    """One piece's section below its title, from its kept records: provenance and its
    output or tables and figures, or the command alone when it has no accepted record."""
    meta, why = piece_meta(name)
    if meta is None:
        return (f"Not in this assembly ({why}). Reproduce: `{shown_command(name)}`"
                + (f"  \nEarlier measurements: {EARLIER[name]}." if name in EARLIER else "")
                + "\n")
    if name in ACCURACY:
        return accuracy_section(name, meta)
    if name == "calibration":
        return calibration_section(meta)
    lines = cut_shutdown_noise((RECORDS / f"{name}.out").read_text().strip().splitlines())
    starts = [i for i, ln in enumerate(lines) if ln.startswith(SUMMARY_FROM.get(name, "\0"))]
    lines = lines[starts[-1]:] if starts else lines
    body = "\n".join(ln for ln in lines if not ln.startswith("WARNING:absl")).strip()
    if len(body) > 12000:
        body = "...\n" + body[-12000:]
    return "\n".join([provenance(meta) + (f"\n{meta['note']}\n" if meta.get("note") else "")
                      + "\n```\n" + relative(body, meta.get("out")) + "\n```\n",
                      *(f"![{pathlib.Path(f).stem}]({f})\n" for f in FIGURES.get(name, []))])


#: Dask's log line when a worker's heartbeat met a scheduler that had closed (a cluster
#: closing; since 4885df4 the grid quiets it), and the lines of its traceback.
HEARTBEAT_ERROR = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ - distributed\.worker - ERROR - "
                             r"Failed to communicate with scheduler during heartbeat\.$")
TRACEBACK_LINE = re.compile(r"^(Traceback \(most recent call last\):|  File \".*|    .*|"
                            r"The above exception was the direct cause of the following exception:"
                            r"|[\w.]+(Error|Exception)(: .*)?|)$")


def cut_shutdown_noise(lines: list[str]) -> list[str]:
    """``lines`` of a piece's output with each of Dask's heartbeat-at-shutdown errors and
    its traceback replaced by one line saying so (they are the closing cluster's race,
    not the measurement's)."""
    out, i = [], 0
    while i < len(lines):
        if not HEARTBEAT_ERROR.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        j = i + 1
        while j < len(lines) and TRACEBACK_LINE.match(lines[j]) and not HEARTBEAT_ERROR.match(lines[j]):
            j += 1
        out.append(f"[{lines[i][:19]}: Dask: a worker's heartbeat met the closed scheduler while "
                   f"the cluster closed; its traceback ({j - i - 1} lines) cut]")
        i = j
    return out


def block_span(lines: list[str], start: int) -> int:
    """End (exclusive) of the generated block starting at ``lines[start]`` (its
    ``Command:`` line), within its section (up to the next ``## `` heading outside code
    fences): through the second line opening with a code fence after it (the end of its
    output), then the figure lines that follow (blank lines between them); a block without
    an output in fences (the calibration's: tables, then a figure) ends after its first
    figure lines (hand text after them may hold figures of its own); without either, at
    the next ``Command:`` line or the section's end."""
    end = section_end(lines, start)
    j, fences = start, 0
    while j < end and fences < 2:
        fences += lines[j].startswith("```")
        j += 1
    if fences < 2:
        j = next((k for k in range(start + 1, end) if lines[k].startswith("![")), None)
        if j is None:
            return start + 1 + next((k for k, ln in enumerate(lines[start + 1:end])
                                     if ln.startswith("Command:")), end - start - 1)
    while j < end and (lines[j].startswith("![") or (
            lines[j] == "" and j + 1 < end and lines[j + 1].startswith("!["))):
        j += 1
    return j


def section_end(lines: list[str], heading: int) -> int:
    """End (exclusive) of the section whose ``## `` heading is ``lines[heading]``: the next
    ``## `` heading outside code fences (a piece's output may print such lines), or the end."""
    fenced = False
    for j in range(heading + 1, len(lines)):
        if lines[j].startswith("```"):
            fenced = not fenced
        elif not fenced and lines[j].startswith("## "):
            return j
    return len(lines)


def refresh(page: str, names: list[str]) -> tuple[str, list[str]]:
    """``page`` (a hand-merged RESULTS.md) with each piece's generated block replaced by
    :func:`piece_section` from its kept records, and one line per piece saying what was
    done. A block is found by its exact ``Command: `<command>``` line; without one (a
    hand-run section, or a block of an older command), the whole section under the
    piece's ``## <title>`` heading is replaced, hand text included (it stays in git's
    history). A piece whose block or heading is not there exactly once, or that has no
    accepted record, is left as it is."""
    lines, said = page.split("\n"), []
    for name in names:
        head = f"Command: `{shown_command(name)}`  "
        starts = [i for i, ln in enumerate(lines) if ln == head]
        new = piece_section(name).rstrip("\n").split("\n")
        titles = [i for i, ln in enumerate(lines) if ln == f"## {TITLES[name]}"]
        if not new[0].startswith("Command:"):
            said.append(f"{name}: left as it is: {new[0]}")
        elif not starts and len(titles) == 1:
            end = section_end(lines, titles[0])
            lines[titles[0] + 1:end] = ["", *new, ""]
            said.append(f"{name}: section lines {titles[0] + 2}-{end} replaced from its records "
                        "(no block of its command)")
        elif len(starts) != 1:
            said.append(f"{name}: left as it is: {len(starts)} blocks start with {head.strip()!r}")
        else:
            end = block_span(lines, starts[0])
            lines[starts[0]:end] = new
            said.append(f"{name}: lines {starts[0] + 1}-{end} replaced from its records")
    return "\n".join(lines), said


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=None,
                    help="comma-separated pieces: " + ", ".join(PIECES))
    ap.add_argument("--skip-perf", action="store_true", help="skip the performance benchmarks")
    ap.add_argument("--assemble", action="store_true",
                    help="only rebuild docs/RESULTS.md from the records (benchmarks/records/)")
    ap.add_argument("--refresh", action="store_true",
                    help="only replace, in the hand-merged docs/RESULTS.md, the generated "
                    "block of each piece (--only) with one built from its committed records")
    ap.add_argument("--keep", action="store_true",
                    help="only copy the record files of the pieces (--only; default all) from "
                    "--out into the records (e.g. a long run's partial results)")
    ap.add_argument("--no-assemble", action="store_true",
                    help="run the pieces only (e.g. a chain of long runs in a snapshot worktree)")
    ap.add_argument("--rounds", type=int, default=None, help="passed to accuracy.py")
    ap.add_argument("--width", type=float, default=None, help="passed to accuracy.py")
    ap.add_argument("--nice", action="store_true", help="run pieces under nice -n 10")
    ap.add_argument("--out", default=None,
                    help="folder of the pieces' outputs, run folders and checkpoints (default "
                    "benchmarks/out; e.g. a snapshot worktree's runs writing outside it)")
    ap.add_argument("--records", default=None,
                    help="folder of the kept records the page is assembled from (default "
                    "benchmarks/records, committed; e.g. the main checkout's, from a snapshot)")
    ap.add_argument("--accuracy-args", default="",
                    help="more arguments for accuracy.py pieces, one shell-quoted string, e.g. "
                    "\"--seeds 0,1,2 --plateau\"")
    args = ap.parse_args(argv)
    global OUT, RECORDS
    if args.out:
        OUT = pathlib.Path(args.out).resolve()
    if args.records:
        RECORDS = pathlib.Path(args.records).resolve()
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
    if args.keep:
        for name in names:
            kept = keep_records(name)
            print(f"{name}: {len(kept)} record file(s) kept in {relative(str(RECORDS))}")
        return 0
    if args.refresh:
        refusal = dirty_refusal("refresh RESULTS.md", ignore=("docs/RESULTS.md", "docs/results"))
        if refusal:
            print(refusal, file=sys.stderr)
            return 2
        text, said = refresh(RESULTS.read_text(), names)
        write_atomic(RESULTS, text)
        print("\n".join(said))
        return 0
    # records and figures appear as pieces end: running more pieces does not wait for a commit
    refusal = (dirty_refusal("assemble RESULTS.md") if args.assemble
               else dirty_refusal("run benchmarks", ignore=PIECE_OUTPUTS))
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    if not args.assemble:
        for name in names:
            extra = []
            if name in ACCURACY:
                extra += ["--rounds", str(args.rounds)] if args.rounds else []
                extra += ["--width", str(args.width)] if args.width else []
                extra += shlex.split(args.accuracy_args)
            failed += run_piece(name, extra, args.nice) != 0
        if args.no_assemble:
            return 1 if failed else 0
        refusal = dirty_refusal("assemble RESULTS.md")
        if refusal:
            print(refusal, file=sys.stderr)
            return 2
    RESULTS.write_text(assemble())
    print(f"wrote {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
