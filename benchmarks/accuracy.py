"""Accuracy of the study's settings on real pixels, at CPU scale.

    python benchmarks/accuracy.py                          # all suites, default sizes
    python benchmarks/accuracy.py --suite vgg --rounds 8 --width 0.25
    python benchmarks/accuracy.py --quick                  # smoke test (~1 min)

Suites (each run federated through the real engine on one 2-worker LocalCluster
reused by every run, ``grid.workers=2, grid.threads_per_worker=1``):

* ``vgg``: VGG-16 (CIFAR head, batch norm, channel width ``--width``) on the
  CIFAR-10 slice (5085 train / 1017 test), 10 clients: independent (iid) vs
  balanced(0.8) (home-class reading) vs stratified(0.8) (the presets' reading of the
  study's "balanced", see ``balanced_calibration.py``) vs dirichlet(0.5) with the
  static forming strategy; the four
  forming strategies (static, dynamic, stochastic, hybrid(0.5)) on independent data;
  and a centralized baseline with the same total epochs (one plain ``local_train``
  epoch over all training data per "round", evaluated every round).
* ``mobilenet``: MobileNetV3-Small on the medium Tiny-ImageNet set (all 200 classes,
  200 train images per class = 40,000, and the complete official validation split of
  10,000; 64x64), 10 clients (4,000 images, 125 local steps each per round), the
  study's Adam lr 0.001 and batch 32, resident data: independent vs stratified(0.9)
  (the presets' reading of the study's balanced(0.9)), and centralized.
* ``texture``: texture-fragment classification on the DTD slice (10 classes,
  fragments of 128 px at stride 64, rotated by 0/90 degrees, standardized, resized
  to 32 px; train/test split by source photo), VGG-11 at ``--width``, 5 clients:
  independent and centralized.

Every run prints a row of a markdown table (final and best global test accuracy,
rounds, wall time including compilation, time and round at which 90 % of the
final accuracy was first reached), then the targets with pass/fail; figures
(``plots.compare_runs`` / ``plots.time_to_accuracy``) go to ``--figures``
(default ``docs/results``), records to ``--out`` (default ``benchmarks/out/accuracy``).

Targets (from the study's shape of results): federated independent accuracy
>= 0.9 x centralized at equal epochs; balanced and dirichlet below independent.

The data slices live in ``../shared/data`` (``FEDJAX_GRID_SHARED_DATA`` overrides);
without them the script exits with status 2 and a one-line message.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import pathlib
import shutil
import sys
import time
from typing import Optional

import numpy as np
import pandas as pd

from fedjax_grid.data.paths import shared_data_dir
from fedjax_grid.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[1]
SLICES = {"vgg": "cifar-10-binary-sample.tar.gz", "vgg-forming": "cifar-10-binary-sample.tar.gz",
          "mobilenet": "tiny-imagenet-200-medium.zip",
          "texture": "dtd-texture-sample.zip"}
#: accuracies compared by the targets are the mean of this many last evaluations
TAIL = 3
SUITES = ("vgg", "vgg-forming", "mobilenet", "texture")
#: default (rounds, width) per suite, sized for <= ~25 min per suite on 2 quiet cores
#: (VGG-16 width 0.25: ~8.5 s per round of 10 clients or per centralized epoch)
DEFAULTS = {"vgg": (40, 0.25), "vgg-forming": (16, 0.25), "mobilenet": (8, 1.0),
            "texture": (16, 0.25)}


def parse_names(text: str, allowed, flag: str) -> list[str]:
    """A comma-separated subset of ``allowed``; UserError naming the first unknown one."""
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise UserError(f"{flag} {bad[0] if bad else text!r} is unknown; allowed: "
                        + ", ".join(allowed))
    return names


@dataclasses.dataclass
class Spec:
    """One run of a suite: a federated config or the centralized baseline of one."""
    suite: str
    name: str            # run name in tables and legends
    cfg: object          # ExperimentConfig
    centralized: bool = False
    groups: tuple = ()   # figure groups it belongs to ('distribution', 'forming')


# ---------------------------------------------------------------- configurations

def _base(sets: list[str]):
    from fedjax_grid.experiments import ExperimentConfig
    return ExperimentConfig().with_overrides(sets + ["grid.workers=2", "grid.threads_per_worker=1",
                                                     "grid.dashboard_address=null"])


def _vgg_base(rounds: int, width: float, data: pathlib.Path, data_dir: str, quick: bool):
    sets = ["model.name=vgg16", f"model.kwargs={{width: {width}, norm: batch, head: cifar}}",
            "data.source=cifar10", f"data.path={data / SLICES['vgg']}", f"data.data_dir={data_dir}",
            "data.image_size=null", f"partition.num_clients={4 if quick else 10}",
            f"training.rounds={rounds}", "training.optimizer=momentum", "training.lr=0.05",
            "training.batch_size=32", "training.augment=false"]
    if quick:
        sets.append("data.max_test_examples=256")
    return _base(sets)


def vgg_specs(rounds: int, width: float, data: pathlib.Path, data_dir: str, *, quick=False):
    """Independent vs balanced(0.8) vs dirichlet(0.5) (static forming), and centralized."""
    base = _vgg_base(rounds, width, data, data_dir, quick)
    iid = base.with_overrides(["name=vgg16-iid-static"])
    if quick:
        return [Spec("vgg", "iid static", iid, groups=("distribution",))]
    return [
        Spec("vgg", "iid static", iid, groups=("distribution",)),
        Spec("vgg", "balanced(0.8) static", base.with_overrides(
            ["name=vgg16-balanced", "partition.distribution=balanced(0.8)"]),
            groups=("distribution",)),
        Spec("vgg", "stratified(0.8) static", base.with_overrides(
            ["name=vgg16-stratified", "partition.distribution=stratified(0.8)"]), groups=("distribution",)),
        Spec("vgg", "dirichlet(0.5) static", base.with_overrides(
            ["name=vgg16-dirichlet", "partition.distribution=dirichlet(0.5)"]),
            groups=("distribution",)),
        Spec("vgg", "centralized", iid, centralized=True, groups=("distribution",)),
    ]


def vgg_forming_specs(rounds: int, width: float, data: pathlib.Path, data_dir: str, *,
                      quick=False):
    """The four forming strategies (static, dynamic, stochastic, hybrid(0.5)) on iid data."""
    base = _vgg_base(rounds, width, data, data_dir, quick)
    specs = []
    for forming, extra in (("static", []), ("dynamic", []), ("stochastic", []),
                           ("hybrid", ["partition.forming.keep=0.5"])):
        label = "iid hybrid(0.5)" if forming == "hybrid" else f"iid {forming}"
        specs.append(Spec("vgg-forming", label, base.with_overrides(
            [f"name=vgg16-iid-{forming}", f"partition.forming={forming}"] + extra),
            groups=("forming",)))
    return specs


def mobilenet_specs(rounds: int, width: float, data: pathlib.Path, data_dir: str, *, quick=False):
    sets = ["model.name=mobilenet_v3_small", f"model.kwargs={{width_multiplier: {width}}}",
            "data.source=tiny_imagenet", f"data.path={data / SLICES['mobilenet']}",
            f"data.data_dir={data_dir}", "data.image_size=null", "data.mode=resident",
            f"partition.num_clients={4 if quick else 10}", f"training.rounds={rounds}",
            "training.optimizer=adam", "training.lr=0.001", "training.batch_size=32",
            "training.augment=false"]
    base = _base(sets)
    iid = base.with_overrides(["name=mnv3s-iid"])
    specs = [Spec("mobilenet", "iid static", iid, groups=("distribution",))]
    if not quick:
        specs.append(Spec("mobilenet", "stratified(0.9) static", base.with_overrides(
            ["name=mnv3s-stratified", "partition.distribution=stratified(0.9)"]),
            groups=("distribution",)))
        # FedAvgM (Hsu et al. 2019, server momentum 0.9): the server step of 10 clients' mean
        # update is ~1/10 of a centralized epoch's progress; momentum recovers part of it.
        specs.append(Spec("mobilenet", "iid static fedavgm(0.9)", iid.with_overrides(
            ["name=mnv3s-iid-fedavgm", "server.optimizer=fedavgm(momentum=0.9)"]),
            groups=("distribution",)))
    specs.append(Spec("mobilenet", "centralized", iid, centralized=True, groups=("distribution",)))
    return specs


def texture_specs(rounds: int, width: float, data: pathlib.Path, data_dir: str, *, quick=False):
    sets = ["model.name=vgg11", f"model.kwargs={{width: {width}, norm: batch, head: cifar}}",
            "data.source=texture_fragments", f"data.path={data / SLICES['texture']}",
            "data.image_size=32",
            "data.options={size: 128, stride: 64, angles: [0, 90], normalize: standardize, "
            "cache_images: 128}",
            f"partition.num_clients={4 if quick else 5}", f"training.rounds={rounds}",
            "training.optimizer=momentum", "training.lr=0.05", "training.batch_size=32",
            "training.augment=false"]
    base = _base(sets)
    iid = base.with_overrides(["name=texture-iid"])
    return [Spec("texture", "iid static", iid, groups=("distribution",)),
            Spec("texture", "centralized", iid, centralized=True, groups=("distribution",))]


SPEC_BUILDERS = {"vgg": vgg_specs, "vgg-forming": vgg_forming_specs, "mobilenet": mobilenet_specs, "texture": texture_specs}


# ---------------------------------------------------------------- running

def run_federated(spec: Spec, out_dir: pathlib.Path, grid, log=print) -> pd.DataFrame:
    """The engine's rounds table of one federated run on the shared cluster."""
    from fedjax_grid.runner import FederatedRun

    def progress(row):
        log(f"  [{spec.suite}] {spec.name} round {row['round']}: "
            f"acc {100 * row['global_accuracy']:.2f} %, {row['round_time_s']:.1f} s")

    with FederatedRun(spec.cfg, out_dir=out_dir, grid=grid) as run:
        run.run(callback=progress)
        return run.records.rounds()


def run_centralized(spec: Spec, out_dir: pathlib.Path, log=print) -> pd.DataFrame:
    """One ``local_train`` epoch over all training data per round, evaluated each round.

    Same model, initial variables, optimiser, lr, batch size and normalisation as
    the federated run (from the same builders); runs in this process. The optimiser
    state restarts each epoch, as a client's does each round.
    """
    from fedjax_grid.experiments.build import build_experiment, initial_variables
    from fedjax_grid.training import Standardize, evaluate, local_train
    exp = build_experiment(spec.cfg)
    pre = Standardize(mean=exp.data.mean, std=exp.data.std)
    train = exp.data.train.__getitems__(np.arange(len(exp.data.train)))
    data = (train["image"], train["label"])
    variables = initial_variables(spec.cfg, exp.model, exp.data.info.image_shape)
    rows = []
    t0 = time.time()
    for r in range(spec.cfg.training.rounds):
        t_round = time.time()
        variables, _ = local_train(exp.model, variables, data, exp.hparams,
                                   1000 * spec.cfg.seed + 13 + r,
                                   preprocess=pre)
        m = evaluate(exp.model, variables, exp.data.test_arrays, spec.cfg.training.test_batch_size,
                     preprocess=pre)
        now = time.time()
        rows.append({"round": r + 1, "global_loss": float(m["loss"]),  # 1-based, as the engine's
                     "global_accuracy": float(m["accuracy"]), "round_time_s": now - t_round,
                     "elapsed_s": now - t0})
        log(f"  [{spec.suite}] {spec.name} epoch {r + 1}: "
            f"acc {100 * m['accuracy']:.2f} %, {now - t_round:.1f} s")
    table = pd.DataFrame(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "rounds.csv", index=False)
    return table


def summarize(spec: Spec, rounds: pd.DataFrame, wall_s: float) -> dict:
    """Final/best accuracy and time to 90 % of the final accuracy of one run."""
    acc = pd.to_numeric(rounds["global_accuracy"], errors="coerce").to_numpy(float)
    finite = np.isfinite(acc)
    final = float(acc[finite][-1]) if finite.any() else math.nan
    tail = float(np.mean(acc[finite][-TAIL:])) if finite.any() else math.nan
    best = float(np.nanmax(acc)) if finite.any() else math.nan
    hit = np.flatnonzero(finite & (acc >= 0.9 * final)) if finite.any() else []
    t90 = float(rounds["elapsed_s"].iloc[hit[0]]) if len(hit) else math.nan
    r90 = int(rounds["round"].iloc[hit[0]]) if len(hit) else None  # rounds count from 1
    c = spec.cfg
    kw = c.model.kwargs
    width = kw.get("width", kw.get("width_multiplier", 1.0))
    return {"suite": spec.suite, "run": spec.name, "model": c.model.name, "width": width,
            "clients": 1 if spec.centralized else c.partition.num_clients,
            "rounds": int(len(rounds)), "final_acc": final, "tail_acc": tail, "best_acc": best,
            "wall_s": wall_s, "t90_s": t90, "r90": r90}


def markdown_table(rows: list[dict]) -> str:
    head = ("| suite | run | model | width | clients | rounds (epochs) | final acc % "
            f"| mean of last {TAIL} % | best acc % | wall s | time to 90% of final, s (round) |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        t90 = "n/a" if not math.isfinite(r["t90_s"]) else f"{r['t90_s']:.0f} ({r['r90']})"
        lines.append(f"| {r['suite']} | {r['run']} | {r['model']} | {r['width']:g} | {r['clients']} "
                     f"| {r['rounds']} | {100 * r['final_acc']:.2f} | {100 * r['tail_acc']:.2f} "
                     f"| {100 * r['best_acc']:.2f} "
                     f"| {r['wall_s']:.0f} | {t90} |")
    return "\n".join(lines)


def check_targets(rows: list[dict]) -> list[tuple[str, bool, str]]:
    """(target, passed, detail) for every suite present in ``rows``.

    Accuracies compared are the mean of the last ``TAIL`` evaluations (``tail_acc``):
    single rounds swing by 3-6 points on these small test sets.
    """
    out = []
    by = {(r["suite"], r["run"]): r for r in rows}
    for suite in dict.fromkeys(r["suite"] for r in rows):
        iid, cen = by.get((suite, "iid static")), by.get((suite, "centralized"))
        variants = [name for s, name in by if s == suite and name.startswith("iid static ")]
        for name in (["iid static"] if iid else []) + variants:
            fed = by[(suite, name)]
            if not cen:
                break
            ratio = fed["tail_acc"] / cen["tail_acc"] if cen["tail_acc"] > 0 else math.nan
            label = "iid" if name == "iid static" else name
            out.append((f"{suite}: federated {label} >= 0.9 x centralized (mean of last {TAIL} "
                        f"rounds, equal epochs)", bool(ratio >= 0.9),
                        f"{100 * fed['tail_acc']:.2f} % vs {100 * cen['tail_acc']:.2f} % "
                        f"(ratio {ratio:.3f}; last round {100 * fed['final_acc']:.2f} % vs "
                        f"{100 * cen['final_acc']:.2f} %)"))
        if iid:
            for (s, name), r in by.items():
                if s == suite and name.startswith(("balanced", "stratified", "dirichlet")):
                    out.append((f"{suite}: {name} below iid (mean of last {TAIL} rounds)",
                                bool(r["tail_acc"] < iid["tail_acc"]),
                                f"{100 * r['tail_acc']:.2f} % vs {100 * iid['tail_acc']:.2f} %"))
    return out


def write_figures(suite: str, specs: list[Spec], tables: dict, fig_dir: pathlib.Path) -> list[str]:
    """compare_runs per figure group and time_to_accuracy of the whole suite; PNG paths."""
    import matplotlib
    matplotlib.use("Agg")
    from fedjax_grid import plots
    fig_dir.mkdir(parents=True, exist_ok=True)
    written, drawn = [], []
    for group in ("distribution", "forming"):
        names = [s.name for s in specs if group in s.groups and s.name in tables]
        if len(names) < 2 or names in drawn:
            continue  # nothing to compare, or the same runs as the previous figure
        drawn.append(names)
        path = fig_dir / f"{suite}_{group}.png"
        plots.compare_runs({n: tables[n] for n in names}, ["global_accuracy", "global_loss"],
                           save=path, title=f"{suite}: {group}")
        written.append(str(path))
    both = pd.concat([t.assign(run=n) for n, t in tables.items()], ignore_index=True)
    path = fig_dir / f"{suite}_time_to_accuracy.png"
    plots.time_to_accuracy(both, save=path, title=f"{suite}: accuracy against wall time")
    written.append(str(path))
    return written


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "kwargs":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


#: config keys a kept run may differ in (where it ran, how the grid was laid out)
_REUSE_IGNORED = ("grid.", "data.data_dir", "data.path", "name")


def previous_result(spec: Spec, out: pathlib.Path) -> tuple[dict, pd.DataFrame]:
    """The row and curve of ``spec`` from the suite's last ``results.json`` (``--reuse``).

    A federated run's recorded ``config.json`` must agree with ``spec.cfg`` on every key
    both know (grid layout and paths aside), else UserError naming the first difference.
    """
    from fedjax_grid.experiments import ExperimentConfig
    results = out / spec.suite / "results.json"
    if not results.is_file():
        raise UserError(f"--reuse {spec.name!r}: no earlier results in {results}")
    saved = json.loads(results.read_text())
    rows = {r["run"]: r for r in saved["rows"]}
    if spec.name not in rows:
        raise UserError(f"--reuse {spec.name!r}: not among the earlier runs {sorted(rows)}")
    if not spec.centralized:
        recorded = out / spec.suite / spec.cfg.name / "federated" / "config.json"
        if recorded.is_file():
            old = _flat(ExperimentConfig.from_dict(json.loads(recorded.read_text())).to_dict())  # migrated
            new = _flat(spec.cfg.to_dict())
            for k in sorted(old.keys() & new.keys()):
                if not k.startswith(_REUSE_IGNORED) and old[k] != new[k]:
                    raise UserError(f"--reuse {spec.name!r}: earlier run had {k}={old[k]!r}, "
                                    f"this one {new[k]!r}")
    stamp = datetime.datetime.fromtimestamp(results.stat().st_mtime).isoformat(timespec="seconds")
    return dict(rows[spec.name], kept=stamp), pd.DataFrame(saved["curves"][spec.name])


def run_suite(suite: str, specs: list[Spec], out: pathlib.Path, fig_dir: pathlib.Path,
              grid_holder: dict, log=print, reuse: tuple = ()) -> list[dict]:
    from fedjax_grid.grid.cluster import open_cluster
    rows, tables = [], {}
    kept = {s.name: previous_result(s, out) for s in specs if s.name in reuse}
    for spec in specs:
        if spec.name in kept:
            row, tables[spec.name] = kept[spec.name]
            rows.append(row)
            log(f"[{suite}] {spec.name}: kept from the run recorded {row['kept']} (--reuse): "
                f"final {100 * row['final_acc']:.2f} %, {row['wall_s']:.0f} s")
            continue
        run_dir = out / suite / spec.cfg.name / ("centralized" if spec.centralized else "federated")
        if run_dir.exists():
            shutil.rmtree(run_dir)
        t = time.perf_counter()
        if spec.centralized:
            table = run_centralized(spec, run_dir, log)
        else:
            if grid_holder.get("grid") is None:
                grid_holder["grid"] = open_cluster(spec.cfg.grid,
                                                   local_directory=str(out / "dask"))
            table = run_federated(spec, run_dir, grid_holder["grid"], log)
        wall = time.perf_counter() - t
        tables[spec.name] = table
        row = summarize(spec, table, wall)
        rows.append(row)
        curve = " ".join(f"{100 * a:.1f}" for a in pd.to_numeric(table["global_accuracy"]))
        log(f"[{suite}] {spec.name}: final {100 * row['final_acc']:.2f} % "
            f"best {100 * row['best_acc']:.2f} % in {wall:.0f} s; per round: {curve}")
    figs = write_figures(suite, specs, tables, fig_dir)
    log(f"[{suite}] figures: {', '.join(figs)}")
    (out / suite).mkdir(parents=True, exist_ok=True)
    (out / suite / "results.json").write_text(json.dumps(
        {"rows": rows, "curves": {n: t.to_dict("list") for n, t in tables.items()}}, indent=1,
        default=float))
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="all", choices=SUITES + ("all",))
    ap.add_argument("--rounds", type=int, default=None,
                    help="rounds (= epochs of the centralized baseline); default per suite "
                    + str({k: v[0] for k, v in DEFAULTS.items()}))
    ap.add_argument("--width", type=float, default=None,
                    help="VGG channel width / MobileNet width multiplier; default per suite "
                    + str({k: v[1] for k, v in DEFAULTS.items()}))
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: VGG-16 width 0.0625, 4 clients, 1 round, federated iid only")
    ap.add_argument("--runs", default=None,
                    help="comma-separated run names to keep (e.g. 'iid static,centralized')")
    ap.add_argument("--tag", default="",
                    help="suffix of the suite name in tables, records and figure files "
                    "(e.g. --tag=-16r keeps a longer run apart from the default one)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config override of every run of the suite (repeatable), "
                    "e.g. --set server.optimizer=fedavgm")
    ap.add_argument("--reuse", default="",
                    help="comma-separated runs not re-run: their rows and curves are taken from "
                    "the suite's last results.json (a federated run's recorded config must match)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "accuracy"))
    ap.add_argument("--figures", default=str(REPO / "docs" / "results"))
    args = ap.parse_args(argv)

    data = shared_data_dir()
    suites = ["vgg"] if args.quick else (list(SUITES) if args.suite == "all" else [args.suite])
    missing = [str(data / SLICES[s]) for s in suites if not (data / SLICES[s]).is_file()]
    if missing:
        print(f"error: data slice {missing[0]} not found: put the slices in ../shared/data "
              "or set FEDJAX_GRID_SHARED_DATA", file=sys.stderr)
        return 2
    if args.rounds is not None and args.rounds < 1:
        print(f"error: --rounds={args.rounds} is invalid: an integer >= 1 is required", file=sys.stderr)
        return 2
    if args.width is not None and not (0 < args.width <= 4):
        print(f"error: --width={args.width} is invalid: a number in (0, 4] is required", file=sys.stderr)
        return 2
    out, fig_dir = pathlib.Path(args.out), pathlib.Path(args.figures)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = str(out / "prepared")

    import jax
    print(f"# accuracy suite {', '.join(suites)}{' (quick)' if args.quick else ''}: "
          f"{datetime.datetime.now().isoformat(timespec='seconds')}, jax {jax.__version__}, "
          f"backend {jax.default_backend()}", flush=True)
    rows: list[dict] = []
    holder: dict = {}
    try:
        for suite in suites:
            rounds, width = DEFAULTS[suite]
            if args.quick:
                rounds, width = 1, 0.0625
            rounds = args.rounds or rounds
            width = args.width or width
            specs = SPEC_BUILDERS[suite](rounds, width, data, data_dir, quick=args.quick)
            if args.runs:
                keep = [n.strip() for n in args.runs.split(",")]
                unknown = [n for n in keep if n not in {s.name for s in specs}]
                if unknown:
                    print(f"error: --runs {unknown[0]!r} is not a run of suite {suite}: allowed are "
                          + ", ".join(s.name for s in specs), file=sys.stderr)
                    return 2
                specs = [s for s in specs if s.name in keep]
            try:
                specs = [dataclasses.replace(s, suite=suite + args.tag,
                                             cfg=s.cfg.with_overrides(args.sets).validate())
                         for s in specs]
            except UserError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            reuse = [n.strip() for n in args.reuse.split(",") if n.strip()]
            unknown = [n for n in reuse if n not in {s.name for s in specs}]
            if unknown:
                print(f"error: --reuse {unknown[0]!r} is not a run of suite {suite}: allowed are "
                      + ", ".join(s.name for s in specs), file=sys.stderr)
                return 2
            try:
                rows += run_suite(suite + args.tag, specs, out, fig_dir, holder,
                                  log=lambda m: print(m, flush=True), reuse=tuple(reuse))
            except UserError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
    finally:
        if holder.get("grid") is not None:
            holder["grid"].close()
    print()
    print(markdown_table(rows))
    for r in rows:
        if r.get("kept"):
            print(f"\n{r['suite']} {r['run']}: kept from the run recorded {r['kept']} (--reuse)")
    print()
    print("Targets:")
    for target, ok, detail in check_targets(rows):
        print(f"- {'PASS' if ok else 'FAIL'}: {target}: {detail}")
    (out / "summary.json").write_text(json.dumps(rows, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
