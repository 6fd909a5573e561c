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
final accuracy was first reached), then the targets with pass/fail; figures of
the first seed (``plots.compare_runs`` / ``plots.time_to_accuracy``) go to
``--figures`` (default ``benchmarks/out/figures``), records to ``--out`` (default
``benchmarks/out/accuracy``; ``$FEDJAX_GRID_BENCH_OUT/accuracy`` when set).

Seeds, plateau, resume: ``--seeds 0,1,2`` runs every configuration once per seed
(config key ``seed``: initial weights, partition, batches) and decides each target
on the mean of the per-seed ratios, printing the spread and the per-seed values.
``--plateau`` runs the centralized baseline past ``--rounds`` (at most
``--max-rounds``) until its curve stops improving (the best 3-epoch mean rose by
less than 0.5 points over 5 epochs) and then every run of the suite to the epochs
of the latest seed's plateau. Every run checkpoints after each round/epoch under
``<out>/<suite>/s<seed>/<name>/``: the same command, re-run after a kill, resumes
each run where it stopped (bitwise the same curves) and only reads back finished
ones (``--fresh`` discards them). Run folders live on one machine; ``--resume-records
PATH`` (an earlier attempt's ``results.json``, e.g. the piece's committed record under
``benchmarks/records/accuracy/``) also takes every finished run from there that ran the
same experiment (suite, config fingerprint) for at least the epochs asked, so a suite
longer than one machine's life goes on where the last record left it; each row keeps the
commit it ran at.

Targets (from the study's shape of results): federated independent accuracy
>= 0.9 x centralized at equal epochs; balanced and dirichlet below independent.

The data slices live in ``../shared/data`` (``FEDJAX_GRID_SHARED_DATA`` overrides);
without them the script exits with status 2 and a one-line message.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import math
import os
import pathlib
import shutil
import sys
import time
from typing import Callable, Optional

import numpy as np
import pandas as pd

from fedjax_grid.data.paths import shared_data_dir
from fedjax_grid.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[1]
#: where the benchmarks write records (``run_all.py --out`` sets FEDJAX_GRID_BENCH_OUT)
BENCH_OUT = pathlib.Path(os.environ.get("FEDJAX_GRID_BENCH_OUT") or REPO / "benchmarks" / "out")
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


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """Distinct integers >= 0, comma-separated; UserError naming the text otherwise."""
    try:
        seeds = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise UserError(f"{flag}={text!r} is invalid: distinct integers >= 0, "
                        "comma-separated, are required")
    return seeds


@dataclasses.dataclass
class Spec:
    """One run of a suite: a federated config or the centralized baseline of one."""
    suite: str
    name: str            # run name in tables and legends
    cfg: object          # ExperimentConfig
    centralized: bool = False
    groups: tuple = ()   # figure groups it belongs to ('distribution', 'forming')
    seed: int = 0        # the config's seed (``seed=``), one run per seed of ``--seeds``

    @property
    def key(self) -> str:
        """'<name>|<seed>': the run's key in results.json's curves."""
        return f"{self.name}|{self.seed}"

    def run_dir(self, out: pathlib.Path) -> pathlib.Path:
        """Where this run's records and checkpoints go: <out>/<suite>/s<seed>/<cfg.name>/<kind>."""
        return (out / self.suite / f"s{self.seed}" / self.cfg.name
                / ("centralized" if self.centralized else "federated"))


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
    # federated runs in order of priority (run_suite keeps it): iid (fed / central), the
    # presets' reading of the study's balanced, dirichlet, the home-class reading
    return [
        Spec("vgg", "iid static", iid, groups=("distribution",)),
        Spec("vgg", "stratified(0.8) static", base.with_overrides(
            ["name=vgg16-stratified", "partition.distribution=stratified(0.8)"]), groups=("distribution",)),
        Spec("vgg", "dirichlet(0.5) static", base.with_overrides(
            ["name=vgg16-dirichlet", "partition.distribution=dirichlet(0.5)"]),
            groups=("distribution",)),
        Spec("vgg", "balanced(0.8) static", base.with_overrides(
            ["name=vgg16-balanced", "partition.distribution=balanced(0.8)"]),
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
        # the study's balanced row: 5 nodes (paper-mobilenetv3-tinyimagenet-balanced's reading)
        specs.append(Spec("mobilenet", "stratified(0.9) 5 clients", base.with_overrides(
            ["name=mnv3s-stratified-5c", "partition.distribution=stratified(0.9)",
             "partition.num_clients=5"]), groups=("distribution",)))
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


SPEC_BUILDERS = {"vgg": vgg_specs, "vgg-forming": vgg_forming_specs, "mobilenet": mobilenet_specs,
                 "texture": texture_specs}


# ---------------------------------------------------------------- running

def run_federated(spec: Spec, out_dir: pathlib.Path, grid, log=print) -> pd.DataFrame:
    """The engine's rounds table of one federated run on the shared cluster, with
    ``local_loss``: the mean training loss of the round's accepted client tasks.

    A folder holding checkpoints of this experiment is resumed from its last one (the
    engine continues bitwise as if never stopped; a finished run is only read back),
    so a killed suite re-run with the same command loses at most one round per run.
    """
    from fedjax_grid.grid.checkpoint import latest_checkpoint
    from fedjax_grid.runner import FederatedRun

    def progress(row):
        log(f"  [{spec.suite}] {spec.name} seed {spec.seed} round {row['round']}: "
            f"acc {100 * row['global_accuracy']:.2f} %, {row['round_time_s']:.1f} s")

    resume = latest_checkpoint(out_dir / "checkpoints") is not None
    with FederatedRun(spec.cfg, out_dir=out_dir, grid=grid, resume=resume) as run:
        if resume:
            log(f"  [{spec.suite}] {spec.name} seed {spec.seed}: resumed after round {run.round}")
        run.run(callback=progress)
        return with_local_loss(run.records.rounds(), run.records.tasks())


def with_local_loss(rounds: pd.DataFrame, tasks: pd.DataFrame) -> pd.DataFrame:
    """``rounds`` plus ``local_loss``: per round, the mean over the accepted ('ok') client
    tasks of each local model's training loss (the study's "local-model loss")."""
    ok = tasks[tasks["status"] == "ok"]
    loss = pd.to_numeric(ok["local_loss"], errors="coerce").groupby(ok["round"]).mean()
    return rounds.assign(local_loss=rounds["round"].map(loss).astype(float))


def run_centralized(spec: Spec, out_dir: pathlib.Path, log=print,
                    stop: Optional[Callable[[list], bool]] = None) -> pd.DataFrame:
    """One ``local_train`` epoch over all training data per round, evaluated each round,
    up to ``cfg.training.rounds`` epochs or until ``stop(accuracies so far)`` is true.

    Same model, initial variables, optimiser, lr, batch size and normalisation as
    the federated run (from the same builders); runs in this process. The optimiser
    state restarts each epoch, as a client's does each round. Checkpointed after every
    epoch (``out_dir/checkpoints``: the variables and the table so far), so a stopped run
    resumes where it was, bitwise. ``local_loss`` is the epoch's mean training loss.
    """
    from fedjax_grid.experiments.build import build_experiment, initial_variables
    from fedjax_grid.grid.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
    from fedjax_grid.training import Standardize, evaluate, local_train
    exp = build_experiment(spec.cfg)
    pre = Standardize(mean=exp.data.mean, std=exp.data.std)
    variables = initial_variables(spec.cfg, exp.model, exp.data.info.image_shape)
    rows: list[dict] = []
    ckpt = latest_checkpoint(out_dir / "checkpoints")
    if ckpt is not None:
        variables, meta, _ = load_checkpoint(ckpt, template=variables)
        if meta.get("fingerprint") != spec.cfg.fingerprint():
            raise UserError(f"{ckpt} belongs to another experiment: remove {out_dir} or "
                            "pass --fresh")
        rows = meta["rows"]
        log(f"  [{spec.suite}] {spec.name} seed {spec.seed}: resumed after epoch {len(rows)}")
    train = exp.data.train.__getitems__(np.arange(len(exp.data.train)))
    data = (train["image"], train["label"])
    t0 = time.time() - (rows[-1]["elapsed_s"] if rows else 0.0)
    for r in range(len(rows), spec.cfg.training.rounds):
        if stop is not None and stop([row["global_accuracy"] for row in rows]):
            break
        t_round = time.time()
        variables, fit = local_train(exp.model, variables, data, exp.hparams,
                                     1000 * spec.cfg.seed + 13 + r, preprocess=pre)
        m = evaluate(exp.model, variables, exp.data.test_arrays, spec.cfg.training.test_batch_size,
                     preprocess=pre)
        now = time.time()
        rows.append({"round": r + 1, "global_loss": float(m["loss"]),  # 1-based, as the engine's
                     "global_accuracy": float(m["accuracy"]), "round_time_s": now - t_round,
                     "elapsed_s": now - t0, "local_loss": float(fit["loss"])})
        save_checkpoint(out_dir / "checkpoints", r + 1, variables,
                        {"fingerprint": spec.cfg.fingerprint(), "rows": rows}, keep=2)
        log(f"  [{spec.suite}] {spec.name} seed {spec.seed} epoch {r + 1}: "
            f"acc {100 * m['accuracy']:.2f} %, {now - t_round:.1f} s")
    table = pd.DataFrame(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "rounds.csv", index=False)
    return table


#: plateau rule: the best mean of PLATEAU_SMOOTH consecutive evaluations rose by less than
#: PLATEAU_GAIN (accuracy, 0-1) over the last PLATEAU_WINDOW epochs
PLATEAU_SMOOTH, PLATEAU_WINDOW, PLATEAU_GAIN = 3, 5, 0.005


def plateau_epoch(accs, min_epochs: int = 1) -> Optional[int]:
    """First epoch e >= ``min_epochs`` (1-based) at which the curve ``accs`` has stopped
    improving: the best 3-epoch mean up to e exceeds the best one up to e - 5 by less than
    0.5 points; None when no such epoch."""
    a = np.asarray(accs, float)
    k, w = PLATEAU_SMOOTH, PLATEAU_WINDOW
    if len(a) < k + w:
        return None
    means = np.convolve(a, np.ones(k) / k, mode="valid")  # means[i]: epochs i+1 .. i+k
    best = np.maximum.accumulate(means)                    # best[i]: up to epoch i+k
    for e in range(max(min_epochs, k + w), len(a) + 1):
        if best[e - k] - best[e - k - w] < PLATEAU_GAIN:
            return e
    return None


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
    return {"suite": spec.suite, "run": spec.name, "seed": spec.seed, "model": c.model.name,
            "width": width,
            "clients": 1 if spec.centralized else c.partition.num_clients,
            "rounds": int(len(rounds)), "final_acc": final, "tail_acc": tail, "best_acc": best,
            "wall_s": wall_s, "t90_s": t90, "r90": r90,
            "fingerprint": experiment_id(c), "commit": head_commit()}


def experiment_id(cfg) -> str:
    """The config's fingerprint (everything that decides a run's trajectory but its rounds)
    with this machine's paths left out: the data archive by its file name, no prepared-data
    folder. Equal on two machines for the same experiment."""
    data = cfg.data.model_copy(update={
        "path": pathlib.Path(cfg.data.path).name if cfg.data.path else None, "data_dir": None})
    return cfg.model_copy(update={"data": data}).fingerprint()


@functools.lru_cache(maxsize=1)
def head_commit() -> str:
    """A row's provenance in results.json: ``run_all.git_state``'s short HEAD commit, with
    '+dirty' when the tree differs from it beyond what pieces write (records, figures).
    Read once per process."""
    here = str(pathlib.Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    from run_all import PIECE_OUTPUTS, git_state
    commit, dirty = git_state(ignore=PIECE_OUTPUTS)
    return commit + ("+dirty" if dirty and commit != "unknown" else "")


def load_record(path) -> dict:
    """'<run>|<seed>' -> (row, rounds table) of the runs in an earlier ``results.json``
    (``write_results``' format) whose rows carry a config fingerprint; {} when ``path`` does
    not exist. UserError naming the path when it is not such a file."""
    p = pathlib.Path(path)
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
        out = {}
        for row in data["rows"]:
            key = f"{row['run']}|{row.get('seed', 0)}"
            curve = data["curves"].get(key)
            if curve and row.get("fingerprint"):
                out[key] = (row, pd.DataFrame(curve))
        return out
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"--resume-records {p} is not an accuracy suite's results.json "
                        f"({type(e).__name__}: {e})") from None


def recorded(prior: dict, spec: Spec) -> Optional[tuple[dict, pd.DataFrame]]:
    """(row, whole table) of ``spec``'s run in an earlier record (``load_record``) when the
    record ran the same suite and experiment (``experiment_id``: everything but the rounds,
    folders, paths and grid); None otherwise."""
    hit = prior.get(spec.key)
    if hit is None or "round" not in hit[1]:
        return None
    row = hit[0]
    same = row.get("suite") == spec.suite and row.get("fingerprint") == experiment_id(spec.cfg)
    return hit if same else None


def from_record(prior: dict, spec: Spec) -> Optional[pd.DataFrame]:
    """``spec``'s run out of an earlier record (``recorded``), its table cut to the spec's
    rounds, when the record has at least that many; None otherwise (trained here)."""
    hit = recorded(prior, spec)
    need = spec.cfg.training.rounds
    if hit is None or int((hit[1]["round"] <= need).sum()) < need:
        return None
    return hit[1][hit[1]["round"] <= need].reset_index(drop=True)


def markdown_table(rows: list[dict]) -> str:
    head = ("| suite | run | seed | model | width | clients | rounds (epochs) | final acc % "
            f"| mean of last {TAIL} % | best acc % | wall s | time to 90% of final, s (round) |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        t90 = "n/a" if not math.isfinite(r["t90_s"]) else f"{r['t90_s']:.0f} ({r['r90']})"
        lines.append(f"| {r['suite']} | {r['run']} | {r.get('seed', 0)} | {r['model']} "
                     f"| {r['width']:g} | {r['clients']} "
                     f"| {r['rounds']} | {100 * r['final_acc']:.2f} | {100 * r['tail_acc']:.2f} "
                     f"| {100 * r['best_acc']:.2f} "
                     f"| {r['wall_s']:.0f} | {t90} |")
    return "\n".join(lines)


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    v = np.asarray(list(values), float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def seed_ratios(rows: list[dict], suite: str, num: str, den: str) -> dict:
    """seed -> tail_acc(num) / tail_acc(den) for the seeds both runs of ``suite`` have."""
    by = {(r["suite"], r["run"], r.get("seed", 0)): r for r in rows}
    out = {}
    for (s, name, seed), r in sorted(by.items(), key=lambda kv: kv[0][2]):
        d = by.get((suite, den, seed))
        if s == suite and name == num and d is not None and d["tail_acc"] > 0:
            out[seed] = r["tail_acc"] / d["tail_acc"]
    return out


def ratio_text(ratios: dict) -> str:
    """'0.912 +- 0.031 (seeds 0/1/2: 0.90 / 0.95 / 0.89)' of seed -> ratio."""
    m, sd = mean_sd(ratios.values())
    return (f"{m:.3f} \u00b1 {sd:.3f} (seed{'s' if len(ratios) > 1 else ''} "
            + "/".join(str(k) for k in ratios) + ": "
            + " / ".join(f"{v:.3f}" for v in ratios.values()) + ")")


def check_targets(rows: list[dict]) -> list[tuple[str, bool, str]]:
    """(target, passed, detail) for every suite present in ``rows``.

    Accuracies compared are the mean of the last ``TAIL`` evaluations (``tail_acc``):
    single rounds swing by 3-6 points on these small test sets. With several seeds a
    ratio is taken per seed (federated and centralized of the same seed) and the target
    is decided on the mean of the seeds' ratios; the detail states the spread and the
    per-seed values.
    """
    out = []
    names = {}
    for r in rows:
        names.setdefault(r["suite"], dict())[r["run"]] = True
    for suite, runs in names.items():
        variants = [n for n in runs if n.startswith("iid static ")]
        if "centralized" in runs:
            for name in (["iid static"] if "iid static" in runs else []) + variants:
                ratios = seed_ratios(rows, suite, name, "centralized")
                if not ratios:
                    continue
                label = "iid" if name == "iid static" else name
                out.append((f"{suite}: federated {label} >= 0.9 x centralized (mean of last "
                            f"{TAIL} rounds, equal epochs; mean over seeds)",
                            bool(mean_sd(ratios.values())[0] >= 0.9),
                            f"ratio {ratio_text(ratios)}"))
        if "iid static" in runs:
            for name in runs:
                if name.startswith(("balanced", "stratified", "dirichlet")):
                    ratios = seed_ratios(rows, suite, name, "iid static")
                    if ratios:
                        out.append((f"{suite}: {name} below iid (mean of last {TAIL} rounds; "
                                    "mean over seeds)", bool(mean_sd(ratios.values())[0] < 1.0),
                                    f"ratio to iid {ratio_text(ratios)}"))
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


def expand_seeds(specs: list[Spec], seeds: list[int]) -> list[Spec]:
    """Every spec once per seed (``seed=<s>`` set in its config): the centralized runs
    first, then each federated run over the seeds (so the first finished runs pair up)."""
    out = [dataclasses.replace(s, seed=seed, cfg=s.cfg.with_overrides([f"seed={seed}"]))
           for s in specs for seed in seeds]
    return [s for s in out if s.centralized] + [s for s in out if not s.centralized]


def with_rounds(spec: Spec, rounds: int) -> Spec:
    return dataclasses.replace(spec, cfg=spec.cfg.with_overrides([f"training.rounds={rounds}"]))


def plateau_epochs(specs: list[Spec], out: pathlib.Path, plateau: tuple, log=print,
                   fresh: bool = False, prior: Optional[dict] = None,
                   on_run: Optional[Callable] = None) -> tuple[int, dict]:
    """Run each centralized spec until its curve plateaus (``plateau_epoch`` at or after
    ``plateau[0]`` epochs, at most ``plateau[1]``); (epochs E every run of the suite then
    goes to, seed -> plateau epoch or None when not reached within the cap). A curve in
    ``prior`` (``load_record``) that reached its plateau is taken instead of a run.
    ``on_run(spec, table)`` is called after each run trained here (its whole curve), so
    that a suite stopped in this phase keeps the runs it finished (``run_suite``)."""
    low, cap = plateau
    at, ends = {}, []
    for spec in specs:
        hit = recorded(prior or {}, spec)
        done = plateau_epoch(hit[1]["global_accuracy"], low) if hit else None
        if done is not None:
            at[spec.seed] = done
            ends.append(done)
            log(f"[{spec.suite}] centralized seed {spec.seed}: plateau at epoch {done} "
                f"(from the record, commit {hit[0].get('commit')})")
            continue
        run_dir = spec.run_dir(out)
        if fresh and run_dir.exists():
            shutil.rmtree(run_dir)
        table = run_centralized(with_rounds(spec, cap), run_dir, log,
                                stop=lambda accs: plateau_epoch(accs, low) is not None)
        if on_run is not None:
            on_run(spec, table)
        at[spec.seed] = plateau_epoch(table["global_accuracy"], low)
        ends.append(at[spec.seed] or len(table))
        log(f"[{spec.suite}] centralized seed {spec.seed}: "
            + (f"plateau at epoch {at[spec.seed]}" if at[spec.seed]
               else f"no plateau within {cap} epochs"))
    return max(ends + [low]), at


def write_results(suite: str, out: pathlib.Path, rows: dict, tables: dict, meta: dict) -> None:
    """<out>/<suite>/results.json: the rows (one per run and seed), the curves (key
    '<run>|<seed>'), and ``meta`` (seeds, epochs, plateau); rewritten after every run."""
    from fedjax_grid.atomic_write import atomic_path
    (out / suite).mkdir(parents=True, exist_ok=True)
    text = json.dumps({**meta, "rows": list(rows.values()),
                       "curves": {k: t.to_dict("list") for k, t in tables.items()}},
                      indent=1, default=float)
    with atomic_path(out / suite / "results.json") as tmp:
        pathlib.Path(tmp).write_text(text)


def run_suite(suite: str, specs: list[Spec], out: pathlib.Path, fig_dir: pathlib.Path,
              grid_holder: dict, log=print, seeds: tuple = (0,),
              plateau: Optional[tuple] = None, fresh: bool = False,
              prior: Optional[dict] = None) -> list[dict]:
    """Run ``specs`` once per seed (resuming what an earlier, stopped call left); with
    ``plateau=(min, cap)`` the centralized runs go on until they plateau and every run
    then goes to the same number of epochs. Finished runs in ``prior`` (``load_record``)
    are taken from it (``from_record``), not trained again. Writes results.json (meta
    ``from_record``: the keys taken); returns the rows."""
    prior = prior or {}
    from fedjax_grid.grid.cluster import open_cluster
    specs = expand_seeds(specs, list(seeds))
    meta = {"suite": suite, "seeds": list(seeds), "plateau": None,
            "epochs": specs[0].cfg.training.rounds}
    rows, tables = {}, {}
    meta["from_record"] = []

    def keep(spec, table):  # a centralized run at its plateau, before the epochs are known
        tables[spec.key] = table
        rows[spec.key] = summarize(spec, table, float(table["elapsed_s"].iloc[-1]))
        write_results(suite, out, rows, tables, meta)
    if plateau is not None and any(s.centralized for s in specs):
        epochs, at = plateau_epochs([s for s in specs if s.centralized], out, plateau, log, fresh,
                                    prior, on_run=keep)
        meta.update(epochs=epochs, plateau={
            "rule": f"best {PLATEAU_SMOOTH}-epoch mean of the centralized test accuracy rose by "
                    f"< {100 * PLATEAU_GAIN:g} points over {PLATEAU_WINDOW} epochs",
            "min_epochs": plateau[0], "max_epochs": plateau[1],
            "at": {str(k): v for k, v in at.items()}})
        specs = [with_rounds(s, epochs) for s in specs]
    for spec in specs:
        kept = from_record(prior, spec)
        if kept is not None:
            row = dict(summarize(spec, kept, float(kept["elapsed_s"].iloc[-1])),
                       commit=prior[spec.key][0].get("commit"))
            tables[spec.key], rows[spec.key] = kept, row
            meta["from_record"].append(spec.key)
            log(f"[{suite}] {spec.name} seed {spec.seed}: {len(kept)} epochs taken from the "
                f"record (commit {row['commit']}), final {100 * row['final_acc']:.2f} %")
            write_results(suite, out, rows, tables, meta)
            continue
        run_dir = spec.run_dir(out)
        if fresh and run_dir.exists() and not (spec.centralized and plateau):
            shutil.rmtree(run_dir)
        if spec.centralized:
            table = run_centralized(spec, run_dir, log)
        else:
            if grid_holder.get("grid") is None:
                grid_holder["grid"] = open_cluster(spec.cfg.grid,
                                                   local_directory=str(out / "dask"))
            table = run_federated(spec, run_dir, grid_holder["grid"], log)
        table = table[table["round"] <= spec.cfg.training.rounds].reset_index(drop=True)
        wall = float(table["elapsed_s"].iloc[-1]) if len(table) else 0.0
        tables[spec.key] = table
        row = rows[spec.key] = summarize(spec, table, wall)
        curve = " ".join(f"{100 * a:.1f}" for a in pd.to_numeric(table["global_accuracy"]))
        log(f"[{suite}] {spec.name} seed {spec.seed}: final {100 * row['final_acc']:.2f} % "
            f"best {100 * row['best_acc']:.2f} % in {wall:.0f} s; per round: {curve}")
        write_results(suite, out, rows, tables, meta)
    first = [s for s in specs if s.seed == seeds[0]]
    figs = write_figures(suite, first, {s.name: tables[s.key] for s in first}, fig_dir)
    log(f"[{suite}] figures (seed {seeds[0]}): {', '.join(figs)}")
    return list(rows.values())


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
    ap.add_argument("--seeds", default="0",
                    help="comma-separated seeds (config key seed): every run once per seed; "
                    "targets are decided on the mean over the seeds (default 0)")
    ap.add_argument("--plateau", action="store_true",
                    help="run the centralized baseline beyond --rounds until it stops improving "
                    f"(best {PLATEAU_SMOOTH}-epoch mean up < {100 * PLATEAU_GAIN:g} points over "
                    f"{PLATEAU_WINDOW} epochs; at most --max-rounds), then every run to the "
                    "epochs of the latest seed's plateau")
    ap.add_argument("--max-rounds", type=int, default=None,
                    help="cap of --plateau (default 3 x --rounds)")
    ap.add_argument("--fresh", action="store_true",
                    help="discard the runs' earlier folders instead of resuming them")
    ap.add_argument("--resume-records", default=None, metavar="RESULTS_JSON",
                    help="an earlier attempt's results.json (e.g. benchmarks/records/accuracy/"
                    "<suite>/results.json): its finished runs of the same experiment are taken, "
                    "not trained again (a missing file: nothing taken)")
    ap.add_argument("--out", default=str(BENCH_OUT / "accuracy"))
    ap.add_argument("--figures", default=str(BENCH_OUT / "figures"),
                    help="figures of the first seed (docs/results' figures are drawn by run_all)")
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
    try:
        seeds = parse_seeds(args.seeds)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.max_rounds is not None and (not args.plateau or args.max_rounds < (args.rounds or 1)):
        print(f"error: --max-rounds={args.max_rounds} is invalid: it needs --plateau and "
              "must be >= --rounds", file=sys.stderr)
        return 2
    try:
        prior = load_record(args.resume_records) if args.resume_records else {}
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
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
            plateau = (rounds, args.max_rounds or 3 * rounds) if args.plateau else None
            try:
                rows += run_suite(suite + args.tag, specs, out, fig_dir, holder,
                                  log=lambda m: print(m, flush=True), seeds=tuple(seeds),
                                  plateau=plateau, fresh=args.fresh, prior=prior)
            except UserError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
    finally:
        if holder.get("grid") is not None:
            holder["grid"].close()
    print()
    print(markdown_table(rows))
    print()
    print("Targets:")
    for target, ok, detail in check_targets(rows):
        print(f"- {'PASS' if ok else 'FAIL'}: {target}: {detail}")
    (out / "summary.json").write_text(json.dumps(rows, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
