"""The accuracy pieces of docs/RESULTS.md, generated from their records (used by run_all.py).

Pure functions of the ``results.json`` files that ``benchmarks/accuracy.py`` and
``benchmarks/balanced_calibration.py`` write: tables of every run over its seeds
(mean +- sample sd, and the value of each seed), the ratios the targets are decided on
(taken per seed, then averaged), the plateau status, and the figures (accuracy per
epoch with its spread over the seeds; the study's figure shape: the local models' loss
and the global model's accuracy per round). Accuracies are the mean of the last
``TAIL`` evaluations of a run unless a column says otherwise.
"""
from __future__ import annotations

import json
import math
import pathlib
from typing import Optional

import numpy as np

TAIL = 3
#: the study's figures (ITP RAS, GRID'2023): "local model loss" (the mean training loss of
#: the nodes' local models in the round) and "global model accuracy" (the aggregated model
#: on the test set) per round
STUDY_LOSS = "local_loss"


# ---------------------------------------------------------------- numbers

def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if len(v) == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def pm(values, scale: float = 100.0, digits: int = 2) -> str:
    """'m ± sd' of ``values`` x ``scale``."""
    m, sd = mean_sd(values)
    return f"{scale * m:.{digits}f} ± {scale * sd:.{digits}f}"


def per_seed(d: dict, scale: float = 100.0, digits: int = 2) -> str:
    """'s0: v0 / s1: v1 / ...' of seed -> value."""
    return " / ".join(f"{k}: {scale * v:.{digits}f}" for k, v in sorted(d.items()))


def load(path: pathlib.Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def curves_of(data: dict) -> dict:
    """(run, seed) -> {column: np.array} of a suite's results.json; text columns (the
    rounds' ``evaluation`` state, e.g. 'done') are left out."""
    out = {}
    for key, table in data.get("curves", {}).items():
        run, _, seed = key.rpartition("|")
        out[(run, int(seed))] = {c: np.asarray([math.nan if v is None else v for v in vals],
                                               float) for c, vals in table.items()
                                 if not any(isinstance(v, str) for v in vals)}
    return out


def tail_at(acc: np.ndarray, epoch: int) -> float:
    """Mean of the last TAIL finite evaluations up to ``epoch`` (1-based)."""
    a = acc[:epoch]
    a = a[np.isfinite(a)]
    return float(a[-TAIL:].mean()) if len(a) else math.nan


def tails(curves: dict, epoch: Optional[int] = None) -> dict:
    """run -> {seed: tail accuracy at ``epoch`` (default: each run's last)}."""
    out: dict = {}
    for (run, seed), c in curves.items():
        acc = c["global_accuracy"]
        e = len(acc) if epoch is None else epoch
        if len(acc) >= e:
            out.setdefault(run, {})[seed] = tail_at(acc, e)
    return out


def ratios(t: dict, num: str, den: str) -> dict:
    """seed -> t[num][seed] / t[den][seed] over the seeds both have."""
    a, b = t.get(num, {}), t.get(den, {})
    return {s: a[s] / b[s] for s in sorted(a) if s in b and b[s] > 0}


def ratio_cell(r: dict) -> str:
    """'m ± sd (per seed ...)', flagged when fewer than 3 seeds are in."""
    if not r:
        return "n/a"
    m, sd = mean_sd(r.values())
    few = f"; **only {len(r)} seed{'s' if len(r) > 1 else ''}**" if len(r) < 3 else ""
    return f"{m:.3f} ± {sd:.3f} (per seed {per_seed(r, 1.0, 3)}{few})"


# ---------------------------------------------------------------- tables

def runs_table(data: dict) -> str:
    """One row per run: seeds, epochs, mean of the last 3 (mean ± sd, per seed), final,
    best, wall time per seed."""
    rows: dict = {}
    for r in data.get("rows", []):
        rows.setdefault(r["run"], []).append(r)
    lines = [f"| run | clients | seeds | epochs | mean of last {TAIL} %, mean ± sd | per seed % "
             "| last round %, mean ± sd | best round %, mean ± sd | wall s per run (mean) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run, rs in rows.items():
        rs = sorted(rs, key=lambda r: r.get("seed", 0))
        seeds = [r.get("seed", 0) for r in rs]
        lines.append(
            f"| {run} | {rs[0]['clients']} | {', '.join(map(str, seeds))} "
            f"| {'/'.join(sorted({str(r['rounds']) for r in rs}))} "
            f"| {pm(r['tail_acc'] for r in rs)} "
            f"| {per_seed({r.get('seed', 0): r['tail_acc'] for r in rs})} "
            f"| {pm(r['final_acc'] for r in rs)} | {pm(r['best_acc'] for r in rs)} "
            f"| {np.mean([r['wall_s'] for r in rs]):.0f} |")
    return "\n".join(lines)


def targets(data: dict) -> list[tuple[str, bool, str]]:
    """(target, passed on the mean over seeds, detail with the spread and per-seed values):
    federated iid >= 0.9 x centralized; each label-skewed run below iid."""
    t = tails(curves_of(data))
    suite = data.get("suite", "?")
    out = []
    if "centralized" in t:
        for run in [r for r in t if r.startswith("iid")]:
            r = ratios(t, run, "centralized")
            if r:
                out.append((f"{suite}: federated {run} >= 0.9 x centralized (equal epochs)",
                            mean_sd(r.values())[0] >= 0.9, f"ratio {ratio_cell(r)}"))
    if "iid static" in t:
        for run in [r for r in t if r.startswith(("balanced", "stratified", "dirichlet"))]:
            r = ratios(t, run, "iid static")
            if r:
                out.append((f"{suite}: {run} below iid static", mean_sd(r.values())[0] < 1.0,
                            f"ratio to iid {ratio_cell(r)}"))
    return out


def ratio_by_epoch(data: dict, num: str, den: str, points: int = 6) -> str:
    """num ÷ den (per seed, means of TAIL epochs, then mean ± sd) at a few epochs."""
    c = curves_of(data)
    n = min((len(v["global_accuracy"]) for (run, _), v in c.items() if run in (num, den)),
            default=0)
    if n < TAIL:
        return ""
    step = max(1, n // points)
    marks = sorted(set(list(range(step, n + 1, step)) + [n]))
    cells = []
    for e in marks:
        r = ratios(tails(c, e), num, den)
        if r:
            m, sd = mean_sd(r.values())
            cells.append(f"{e}: {m:.2f} ± {sd:.2f}")
    return ", ".join(cells)


def plateau_text(data: dict) -> str:
    p = data.get("plateau")
    if not p:
        return (f"All runs ran {data.get('epochs')} epochs (no plateau rule).")
    at = p.get("at", {})
    seeds = ", ".join(f"seed {s}: " + (f"epoch {e}" if e else f"not within {p['max_epochs']}")
                      for s, e in sorted(at.items(), key=lambda kv: int(kv[0])))
    reached = all(at.values()) if at else False
    return (f"Plateau rule: {p['rule']}, checked from epoch {p['min_epochs']} on, at most "
            f"{p['max_epochs']} epochs. Centralized plateau: {seeds}. "
            + ("Every run then went to " if reached else "**Not every seed plateaued**; every "
               "run went to ") + f"{data.get('epochs')} epochs (the latest seed's).")


# ---------------------------------------------------------------- figures

def _mean_band(curves: dict, run: str, column: str):
    arrs = [v[column] for (r, _), v in curves.items() if r == run and column in v]
    if not arrs:
        return None
    n = min(len(a) for a in arrs)
    stack = np.stack([a[:n] for a in arrs])
    with np.errstate(all="ignore"):
        mean = np.nanmean(stack, axis=0)
        sd = np.nanstd(stack, axis=0, ddof=1) if len(arrs) > 1 else np.zeros(n)
    return np.arange(1, n + 1), mean, sd, len(arrs)


def curves_figure(data: dict, path: pathlib.Path, title: str) -> pathlib.Path:
    """Global test accuracy per epoch of every run of the suite, mean over its seeds with
    a band of ± one sd; federated solid, centralized dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    c = curves_of(data)
    fig, ax = plt.subplots(figsize=(7.0, 4.2), layout="constrained")
    for run in dict.fromkeys(r for r, _ in c):
        band = _mean_band(c, run, "global_accuracy")
        if band is None:
            continue
        x, m, sd, k = band
        ls = "--" if run == "centralized" else "-"
        ax.plot(x, 100 * m, ls=ls, label=f"{run} ({k} seed{'s' if k > 1 else ''})")
        ax.fill_between(x, 100 * (m - sd), 100 * (m + sd), alpha=0.2)
    ax.set_xlabel("epoch (= federated round: one local epoch per client)")
    ax.set_ylabel("global test accuracy, %")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def study_figure(data: dict, path: pathlib.Path, title: str, runs: list[str]) -> pathlib.Path:
    """The study's figure shape: left, the local models' loss per round (mean training loss
    of the round's client tasks; centralized: the epoch's training loss); right, the global
    model's test accuracy per round; means over the seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    c = curves_of(data)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.8), layout="constrained")
    for run in runs:
        for ax, col, scale in ((left, STUDY_LOSS, 1.0), (right, "global_accuracy", 100.0)):
            band = _mean_band(c, run, col)
            if band is None:
                continue
            x, m, sd, k = band
            ax.plot(x, scale * m, ls="--" if run == "centralized" else "-",
                    label=f"{run} ({k} seed{'s' if k > 1 else ''})")
            ax.fill_between(x, scale * (m - sd), scale * (m + sd), alpha=0.2)
    left.set(xlabel="round", ylabel="local model loss (training cross-entropy)")
    right.set(xlabel="round", ylabel="global model accuracy, % (test set)")
    left.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def text_curves(data: dict) -> str:
    """Mean global accuracy (%) per epoch of each run, over its seeds, one line per run."""
    c = curves_of(data)
    lines = []
    for run in dict.fromkeys(r for r, _ in c):
        band = _mean_band(c, run, "global_accuracy")
        if band is not None:
            _, m, _, k = band
            lines.append(f"{run} (mean of {k}): " + " ".join(f"{100 * v:.1f}" for v in m))
    return "\n".join(lines)


# ---------------------------------------------------------------- calibration

def calibration_table(data: dict) -> str:
    study = data.get("study_ratio", 85.18 / 86.21)
    lines = [f"| reading | parameter | mean of last 3 %, mean ± sd | ratio to iid, mean ± sd "
             f"| ratio per seed | mean ratio - study's {study:.3f} |",
             "|---|---|---|---|---|---|"]
    for r in data.get("settings", []):
        par = "-" if r["value"] is None else f"{r['value']:g}"
        ps = {int(k): v for k, v in r["per_seed"].items()}
        acc = {int(k): v for k, v in r["acc_per_seed"].items()}
        lines.append(f"| {r['reading']} | {par} | {pm(acc.values())} "
                     f"| {r['ratio']:.3f} ± {r['ratio_sd']:.3f} | {per_seed(ps, 1.0, 3)} "
                     f"| {r['ratio'] - study:+.3f} |")
    return "\n".join(lines + calibration_verdict(data))


def calibration_verdict(data: dict) -> list[str]:
    """Lines under the calibration table: the skew reading (balanced / stratified, a parameter
    in the study's 0.8-0.9) whose mean ratio to iid is closest to the study's, and which
    readings' mean ± one sd over the seeds holds the study's ratio; [] without any."""
    study = data.get("study_ratio", 85.18 / 86.21)
    skewed = [r for r in data.get("settings", []) if r.get("value") is not None
              and 0.8 <= r["value"] <= 0.9 and r["reading"] in ("balanced", "stratified")]
    if not skewed:
        return []

    def name(r):
        return f"{r['reading']}({r['value']:g})"
    best = min(skewed, key=lambda r: abs(r["ratio"] - study))
    inside = [name(r) for r in skewed if abs(r["ratio"] - study) <= r["ratio_sd"]]
    return ["", f"Closest to the study's {study:.3f} (on the mean over "
            f"{len(best['per_seed'])} seeds): **{name(best)}**, {best['ratio']:.3f} ± "
            f"{best['ratio_sd']:.3f} ({best['ratio'] - study:+.3f}). The study's ratio lies "
            "within one sd of the mean of: " + (", ".join(inside) if inside else "none") + "."]


def first_epochs(datas: list[dict], epochs: int, suite: str) -> Optional[dict]:
    """One suite's records from several (e.g. seed 0 run to its plateau and seeds 1, 2 run
    for ``epochs``): every run and seed cut to its first ``epochs`` epochs, rows recomputed
    from the cut curves; runs shorter than ``epochs`` left out. None without any."""
    rows, curves, seeds = [], {}, set()
    for data in datas:
        info = {(r["run"], r.get("seed", 0)): r for r in data.get("rows", [])}
        for key, table in data.get("curves", {}).items():
            run, _, seed = key.rpartition("|")
            r = info.get((run, int(seed)))
            acc = np.asarray([math.nan if v is None else v for v in table["global_accuracy"]],
                             float)
            if r is None or len(acc) < epochs:
                continue
            cut = {c: list(v[:epochs]) for c, v in table.items()}
            a = acc[:epochs]
            finite = a[np.isfinite(a)]
            curves[key] = cut
            seeds.add(int(seed))
            rows.append(dict(r, suite=suite, rounds=epochs, final_acc=float(finite[-1]),
                             tail_acc=tail_at(a, epochs), best_acc=float(finite.max()),
                             wall_s=float(cut["elapsed_s"][-1])))
    if not rows:
        return None
    return {"suite": suite, "seeds": sorted(seeds), "epochs": epochs, "plateau": None,
            "rows": rows, "curves": curves}
