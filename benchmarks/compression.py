"""Compression benchmark: bytes per round both ways, accuracy vs ``none``, codec time, and
time to a target accuracy on slow links (issue 16).

Three parts, printed as markdown tables and written to ``benchmarks/out/compression.json``
with one figure ``docs/results/compression.png``:

1. **Bytes** at FULL width VGG-16 (CIFAR head, batch norm; 14.7 M parameters): the
   real initial variables (``model.init``) are encoded with each setting's broadcast
   codec (download, one desktop) and an update-like delta (per leaf normal, 1 % of the
   leaf's spread) with its upload codec (upload, plus the float32 BatchNorm
   statistics), exactly as the engine does (``payload_nbytes``); no rounds needed, the
   payload sizes depend on the tree's structure only. With ``server.broadcast=delta``
   the download is one step of the chain (the codec applied to a global step of the
   delta's size: ``compression.chain``), after a first round that sends the float32
   model (column "first down MB"; part 3 charges it to round 1). Encode/decode times (median of
   ``--repeats``, numpy on the coordinator's CPU) are measured on the same trees.
2. **Accuracy**: the VGG suite's settings of ``benchmarks/accuracy.py`` (VGG-16 width
   ``--width`` (0.25), momentum lr 0.05, batch 32, 10 clients, independent partition,
   CIFAR-10 slice), ``--rounds`` (6) rounds with every setting on a real 2-worker
   LocalCluster; accuracy = mean of the last 3 rounds' global accuracy, compared with
   ``none`` at equal rounds.
3. **Time to accuracy on the ``home`` and ``wifi`` link presets** (model, not slept):
   the round of each setting takes ``max over its clients of (measured task compute time
   + link download of the FULL-width broadcast payload + link upload of the FULL-width
   update payload)`` with each client's seeded link (``links.link_of(preset, seed,
   client)``), i.e. the desktops train in parallel and the slowest one ends the round;
   compute times are the measured task durations of the width-``--width`` runs (2 shared
   cores, so they overstate a desktop's). The target accuracy is ``--target`` x the best
   round accuracy of ``none``. Speed-up = float32's time to target / the setting's.

    python benchmarks/compression.py                  # 6 rounds, width 0.25
    python benchmarks/compression.py --rounds 3 --width 0.125
    # run_all's piece `codecs`: every setting on 3 seeds, each finished run kept (resumable)
    python benchmarks/compression.py --seeds 0,1,2 --compute-s 2.0 \
        --runs-file benchmarks/out/compression-runs.json
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]

#: (label, upload codec, broadcast codec, server.broadcast)
SETTINGS = [
    ("none", "none", "none", "full"),
    ("bf16", "bf16", "bf16", "full"),
    ("int8", "int8", "int8", "full"),
    ("topk(0.01) up, bf16 down", "topk(0.01)", "bf16", "full"),
    ("topk(0.01, bf16) up, int8 down", "topk(0.01, values=bf16)", "int8", "full"),
    ("quant(4) up, quant(4) delta down", "quant(4)", "quant(4)", "delta"),
    ("quant(3) up, quant(3) delta down", "quant(3)", "quant(3)", "delta"),
    ("quant(3, feedback) up, quant(3) delta down", "quant(bits=3, feedback=true)", "quant(3)",
     "delta"),
]
PRESETS = ("home", "wifi")


def vgg16_variables(width: float) -> dict:
    import jax
    import jax.numpy as jnp
    from fedjax_grid.models import get_model
    model = get_model("vgg16", 10, width=width, norm="batch", head="cifar")
    v = model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
                   jnp.zeros((1, 32, 32, 3)), train=False)
    return jax.tree.map(np.asarray, {k: v[k] for k in v})


def median_ms(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times)), out


def byte_rows(repeats: int) -> list[dict]:
    """Part 1: full-width VGG-16 payload bytes and codec times of every setting."""
    import jax
    from fedjax_grid.compression import broadcast_payload, decode, make_codec, payload_nbytes
    from fedjax_grid.grid.dispatch import tree_nbytes
    gvars = vgg16_variables(1.0)
    rng = np.random.default_rng(0)
    delta = jax.tree.map(lambda x: (rng.standard_normal(x.shape).astype(np.float32)
                                    * np.float32(0.01 * (np.std(x) + 1e-3))), gvars["params"])
    n_params = sum(int(np.size(x)) for x in jax.tree.leaves(gvars["params"]))
    bn = tree_nbytes(gvars.get("batch_stats"))
    f32_up, f32_down = tree_nbytes(delta) + bn, tree_nbytes(gvars)
    # a global step of the delta's size, for the delta broadcast (server.broadcast=delta)
    new = jax.tree.map(lambda x, d: x + d, gvars, {"params": delta, **{
        k: v for k, v in gvars.items() if k != "params"}})
    rows = []
    for label, up, down, mode in SETTINGS:
        codec = make_codec(up)
        enc_ms, (payload, _) = median_ms(lambda: codec.encode(delta, np.random.default_rng(1), None),
                                         repeats)
        dec_ms, _ = median_ms(lambda: decode(payload), repeats)
        if mode == "delta":   # the steady-state step of the chain (the first round: float32)
            b_ms, (bpayload, _) = median_ms(lambda: broadcast_payload(
                new, gvars, down, np.random.default_rng(2)), repeats)
        else:
            b_ms, (bpayload, _) = median_ms(lambda: broadcast_payload(
                gvars, None, down, np.random.default_rng(2), full=down), repeats)
        bd_ms, _ = median_ms(lambda: decode(bpayload["body"]), repeats)
        up_b, down_b = payload_nbytes(payload) + bn, payload_nbytes(bpayload)
        rows.append({"setting": label, "upload": up, "broadcast": down, "mode": mode,
                     "params": n_params, "first_down_bytes": f32_down if mode == "delta" else down_b,
                     "up_bytes": up_b, "down_bytes": down_b,
                     "up_x": f32_up / up_b, "down_x": f32_down / down_b,
                     "round_mb_10": 10 * (up_b + down_b) / 1e6,
                     "round_mb_50": 50 * (up_b + down_b) / 1e6,
                     "encode_up_ms": enc_ms, "decode_up_ms": dec_ms,
                     "encode_down_ms": b_ms, "decode_down_ms": bd_ms})
        print(f"  bytes {label}: up {up_b / 1e6:.2f} MB ({f32_up / up_b:.1f}x), "
              f"down {down_b / 1e6:.2f} MB ({f32_down / down_b:.1f}x)", flush=True)
    return rows


def base_config(rounds: int, width: float, data: pathlib.Path):
    from fedjax_grid.experiments import ExperimentConfig
    return ExperimentConfig().with_overrides([
        "model.name=vgg16", f"model.kwargs={{width: {width}, norm: batch, head: cifar}}",
        "data.source=cifar10", f"data.path={data}", "data.image_size=null",
        "partition.num_clients=10", f"training.rounds={rounds}", "training.optimizer=momentum",
        "training.lr=0.05", "training.batch_size=32", "training.augment=false",
        "grid.workers=2", "grid.threads_per_worker=1", "grid.dashboard_address=null"]).validate()


def accuracy_runs(rounds: int, width: float, data: pathlib.Path, work: pathlib.Path,
                  todo: list, on_done=None) -> dict:
    """Part 2: one engine run per (label, seed) in ``todo`` on a shared LocalCluster;
    (label, seed) -> (rounds, tasks). ``on_done(label, seed, rounds, tasks)`` is called
    after each run (e.g. to keep it before the next one starts)."""
    from fedjax_grid.grid.cluster import open_cluster
    from fedjax_grid.runner import FederatedRun
    base = base_config(rounds, width, data)
    out = {}
    grid = open_cluster(base.grid, local_directory=str(work / "dask"))
    try:
        for i, (label, up, down, mode) in enumerate(SETTINGS):
            for seed in sorted(s for lab, s in todo if lab == label):
                cfg = base.with_overrides([f"name=compression-{i}-seed{seed}", f"server.codec={up}",
                                           f"server.broadcast_codec={down}",
                                           f"server.broadcast={mode}", f"seed={seed}"]).validate()
                t = time.time()
                tag = f"{label}, seed {seed}"
                with FederatedRun(cfg, out_dir=work / f"run-{i}-{seed}", grid=grid) as run:
                    run.run(callback=lambda row, tag=tag: print(
                        f"  [{tag}] round {row['round']}: acc {100 * row['global_accuracy']:.2f} %, "
                        f"{row['round_time_s']:.1f} s, sent {row['bytes_sent'] / 1e6:.2f} MB, "
                        f"received {row['bytes_received'] / 1e6:.2f} MB", flush=True))
                    out[(label, seed)] = (run.records.rounds(), run.records.tasks())
                print(f"  [{tag}] {time.time() - t:.0f} s", flush=True)
                if on_done is not None:
                    on_done(label, seed, *out[(label, seed)])
    finally:
        grid.close()
    return out


def compute_times(tasks) -> list[dict]:
    """Per round: client -> measured task seconds (its ``ok`` tasks)."""
    ok = tasks[tasks["status"] == "ok"]
    return [{int(r["client"]): float(r["duration_s"]) for _, r in g.iterrows()}
            for _, g in ok.groupby("round")]


def simulated_curve(compute: list[dict], up_bytes: int, down_bytes: int, preset: str,
                    seed: int, first_down_bytes: int | None = None) -> list[float]:
    """Cumulative simulated seconds after each round on ``preset`` (see the module doc);
    ``compute``: per round, client -> compute seconds; ``first_down_bytes``: the first
    round's download when it differs (the delta broadcast's full float32 model)."""
    from fedjax_grid.hazards.links import link_of
    ends, t = [], 0.0
    for r, clients in enumerate(compute):
        worst = 0.0
        down = first_down_bytes if (r == 0 and first_down_bytes is not None) else down_bytes
        for k, c in clients.items():
            link = link_of(preset, seed, int(k))
            worst = max(worst, c + link.download_seconds(down) + link.upload_seconds(up_bytes))
        t += worst
        ends.append(t)
    return ends


def time_to(acc: list[float], ends: list[float], target: float):
    for a, e in zip(acc, ends):
        if a >= target:
            return e
    return None


def measured(runs: dict, into: dict | None = None) -> dict:
    """label -> {'curves': {seed: accuracy per round}, 'compute', 'sent_per_round_mb',
    'received_per_round_mb'} from ``accuracy_runs``' (label, seed) -> (rounds, tasks),
    merged into ``into`` (earlier runs) when given; compute and bytes: the lowest seed's."""
    out = into if into is not None else {}
    for (label, seed), (rounds, tasks) in sorted(runs.items(), key=lambda kv: kv[0][1]):
        m = out.setdefault(label, {"curves": {}})
        m["curves"][str(seed)] = [float(a) for a in rounds["global_accuracy"]]
        if "compute" not in m:
            m.update(compute=compute_times(tasks),
                     sent_per_round_mb=float(rounds["bytes_sent"].mean() / 1e6),
                     received_per_round_mb=float(rounds["bytes_received"].mean() / 1e6))
    return out


def read_runs_file(path: pathlib.Path, rounds: int, width: float) -> dict:
    """The runs a ``--runs-file`` keeps (label -> measured entry, as :func:`measured`
    gives); {} when it does not exist. ValueError (one line) when it holds runs of other
    ``--rounds`` / ``--width`` or is not such a file."""
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
        kept = (old["rounds"], old["width"])
        runs = old["runs"]
        bad = [label for label, m in runs.items() if not isinstance(m["curves"], dict)]
        if bad:
            raise TypeError(f"the curves of {bad[0]!r} are not a mapping of seed to curve")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"--runs-file {path} is not a runs file of this benchmark "
                         f"({type(err).__name__}: {err})") from None
    if kept != (rounds, width):
        raise ValueError(f"--runs-file {path} keeps runs of {kept[0]} rounds at width "
                         f"{kept[1]}, not {rounds} at {width}; give another file")
    return runs


def write_runs_file(path: pathlib.Path, rounds: int, width: float, runs: dict) -> None:
    """Keep ``runs`` (label -> measured entry) in ``path`` atomically (an interrupted write
    leaves the earlier runs whole)."""
    from fedjax_grid.atomic_write import write_atomic
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"rounds": rounds, "width": width, "runs": runs}, indent=1,
                                  default=float))


def as_runs(old: dict) -> dict:
    """label -> measured entry from a previous JSON's accuracy rows (a row without
    ``curves`` ran seed 0 only)."""
    out = {}
    for r in old["accuracy"]:
        curves = r.get("curves") or {"0": r["curve"]}
        out[r["setting"]] = {"curves": dict(curves), "compute": r.get("compute"),
                             "sent_per_round_mb": r["sent_per_round_mb"],
                             "received_per_round_mb": r["received_per_round_mb"]}
    return out


def accuracy_rows(runs: dict, bytes_rows: list[dict], target_frac: float, seed: int = 0,
                  compute_s: float | None = None, clients: int = 10):
    """Parts 2 and 3: accuracy vs none and time to target on the slow links; ``runs`` as
    :func:`measured` gives; ``compute_s``: the same compute seconds for every client task
    (None: the measured task durations)."""
    by_label = {r["setting"]: r for r in bytes_rows}
    none_curves = runs["none"]["curves"]
    none_bytes = by_label["none"]
    rows, curves = [], {}
    for label, *_ in SETTINGS:
        if label not in runs:
            continue
        m = runs[label]
        seeds = sorted(set(m["curves"]) & set(none_curves), key=int)
        acc = [float(a) for a in np.mean([m["curves"][s] for s in seeds], axis=0)]
        none_acc = np.mean([none_curves[s] for s in seeds], axis=0)
        target = target_frac * float(np.max(none_acc))   # of none on the same seeds
        # per seed: this setting's mean of the last 3 minus none's (the spread of the gap)
        gaps = [100 * (np.mean(m["curves"][s][-3:]) - np.mean(none_curves[s][-3:])) for s in seeds]
        compute = m.get("compute") if compute_s is None else \
            [{k: compute_s for k in range(clients)} for _ in acc]
        b = by_label[label]
        row = {"setting": label, "seeds": [int(s) for s in seeds],
               "acc_last3": float(np.mean(acc[-3:])),
               "acc_none_last3": float(np.mean(none_acc[-3:])), "gaps": gaps,
               "final": acc[-1], "target": target, "curve": acc, "curves": m["curves"],
               "compute": m.get("compute"),
               "compute_s": compute_s, "sent_per_round_mb": m["sent_per_round_mb"],
               "received_per_round_mb": m["received_per_round_mb"]}
        row["delta_points"] = 100 * (row["acc_last3"] - row["acc_none_last3"])
        none_compute = runs["none"].get("compute") if compute_s is None else compute
        for preset in PRESETS:
            ends = simulated_curve(compute, b["up_bytes"], b["down_bytes"], preset, seed,
                                   b.get("first_down_bytes"))
            curves[(label, preset)] = (ends, acc)
            row[f"tta_{preset}_s"] = t = time_to(acc, ends, target)
            row[f"round_{preset}_s"] = ends[-1] / len(ends)
            ref = time_to(list(none_acc), simulated_curve(
                none_compute, none_bytes["up_bytes"], none_bytes["down_bytes"], preset, seed),
                target)      # float32 on the same seeds, to the same target
            row[f"speedup_{preset}"] = (ref / t) if (ref and t) else None
        rows.append(row)
    return rows, curves


def _f(v, fmt):
    return "not reached" if v is None else format(v, fmt)


def tables(brows: list[dict], arows: list[dict]) -> str:
    out = ["| setting (upload / broadcast) | up MB / desktop | down MB / desktop | first down MB | "
           "up x fewer | down x fewer | MB / round, 10 desktops | MB / round, 50 desktops | "
           "encode up ms | decode up ms | encode down ms | decode down ms |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in brows:
        out.append(f"| {r['setting']} | {r['up_bytes'] / 1e6:.2f} | {r['down_bytes'] / 1e6:.2f} | "
                   f"{r.get('first_down_bytes', r['down_bytes']) / 1e6:.2f} | "
                   f"{r['up_x']:.1f} | {r['down_x']:.1f} | {r['round_mb_10']:.1f} | "
                   f"{r['round_mb_50']:.0f} | {r['encode_up_ms']:.0f} | {r['decode_up_ms']:.0f} | "
                   f"{r['encode_down_ms']:.0f} | {r['decode_down_ms']:.0f} |")
    if arows:
        out += ["", "| setting | seeds | acc. mean last 3 (%) | vs none (points) | "
                "vs none per seed | final (%) | "
                "round on home (s) | to target on home (s) | speed-up home | round on wifi (s) | "
                "to target on wifi (s) | speed-up wifi |",
                "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in arows:
            seeds = r.get("seeds", [0])
            gaps = " / ".join(f"{g:+.1f}" for g in r.get("gaps", [r["delta_points"]]))
            out.append(f"| {r['setting']} | {','.join(map(str, seeds))} | {100 * r['acc_last3']:.2f} | "
                       f"{r['delta_points']:+.2f} | {gaps} | "
                       f"{100 * r['final']:.2f} | {r['round_home_s']:.1f} | "
                       f"{_f(r['tta_home_s'], '.0f')} | {_f(r['speedup_home'], '.2f')} | "
                       f"{r['round_wifi_s']:.1f} | {_f(r['tta_wifi_s'], '.0f')} | "
                       f"{_f(r['speedup_wifi'], '.2f')} |")
        targets = sorted({round(100 * r["target"], 2) for r in arows})
        out.append(f"\ntarget accuracy: {' / '.join(f'{t:.2f}' for t in targets)} % (the fraction "
                   f"given of the best round of none's accuracy curve averaged over the row's "
                   f"seeds); each row compares with none on the same seeds (accuracy, target "
                   f"and time to it)")
    return "\n".join(out)


def figure(brows, curves, path: pathlib.Path, compute: str = "measured") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(brows))
    a.bar(x - 0.2, [r["up_bytes"] / 1e6 for r in brows], 0.4, label="upload")
    a.bar(x + 0.2, [r["down_bytes"] / 1e6 for r in brows], 0.4, label="broadcast")
    a.set_xticks(x, [r["setting"] for r in brows], rotation=20, ha="right", fontsize=8)
    a.set_ylabel("MB per desktop per round (VGG-16, full width)")
    a.set_yscale("log")
    a.legend()
    for label, *_ in SETTINGS:
        if (label, "home") in curves:
            ends, acc = curves[(label, "home")]
            b.plot(np.asarray(ends) / 60, 100 * np.asarray(acc), marker="o", label=label)
    b.set_xlabel(f"simulated minutes on the home link (compute {compute} + transfer modelled)")
    b.set_ylabel("global test accuracy (%)")
    b.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--target", type=float, default=0.9,
                    help="target accuracy as a fraction of none's best round accuracy")
    ap.add_argument("--bytes-only", action="store_true", help="part 1 only")
    ap.add_argument("--compute-s", type=float, default=None,
                    help="part 3: the same compute seconds for every client task (default: "
                         "the measured task durations)")
    ap.add_argument("--recompute", default=None, metavar="JSON",
                    help="redo parts 1 and 3 from a previous --out's accuracy curves (no runs)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds of the accuracy runs")
    ap.add_argument("--only", default=None, metavar="LABELS",
                    help="';'-separated setting labels to run (default: all)")
    ap.add_argument("--reuse", default=None, metavar="JSON",
                    help="take the accuracy runs of the settings a previous --out has (same "
                         "--rounds and --width required) and run only the others")
    ap.add_argument("--runs-file", default=None, metavar="JSON",
                    help="keep every finished accuracy run in JSON and run only those it "
                         "does not hold yet (an interrupted benchmark resumes; same --rounds "
                         "and --width required)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "compression.json"))
    ap.add_argument("--figure", default=str(REPO / "docs" / "results" / "compression.png"))
    args = ap.parse_args(argv)
    from fedjax_grid.data.paths import shared_data_dir
    data = shared_data_dir() / "cifar-10-binary-sample.tar.gz"
    if not args.bytes_only and not args.recompute and not data.is_file():
        print(f"error: data slice {data} not found", file=sys.stderr)
        return 2
    t0 = time.time()
    brows = byte_rows(args.repeats)
    arows, curves = [], {}
    if args.recompute:
        old = json.loads(pathlib.Path(args.recompute).read_text())
        args.rounds, args.width = old["rounds"], old["width"]
        runs = as_runs(old)
        arows, curves = accuracy_rows(runs, brows, args.target, compute_s=args.compute_s)
    elif not args.bytes_only:
        runs = {}
        if args.reuse:
            old = json.loads(pathlib.Path(args.reuse).read_text())
            if (old["rounds"], old["width"]) != (args.rounds, args.width):
                print(f"error: --reuse {args.reuse} ran {old['rounds']} rounds at width "
                      f"{old['width']}, not {args.rounds} at {args.width}", file=sys.stderr)
                return 2
            runs = as_runs(old)
            print(f"  reused from {args.reuse}: " + "; ".join(
                f"{k} (seeds {','.join(v['curves'])})" for k, v in runs.items()), flush=True)
        runs_file = pathlib.Path(args.runs_file) if args.runs_file else None
        if runs_file is not None:
            try:
                for label, m in read_runs_file(runs_file, args.rounds, args.width).items():
                    have = runs.setdefault(label, {"curves": {}})
                    have["curves"] = {**m["curves"], **have["curves"]}
                    for k, v in m.items():
                        have.setdefault(k, v)
            except ValueError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            if runs:
                print(f"  kept in {runs_file}: " + "; ".join(
                    f"{k} (seeds {','.join(v['curves'])})" for k, v in runs.items()), flush=True)

        def keep(label, seed, rounds, tasks):
            measured({(label, seed): (rounds, tasks)}, into=runs)
            if runs_file is not None:
                write_runs_file(runs_file, args.rounds, args.width, runs)

        labels = [label for label, *_ in SETTINGS]
        only = labels if args.only is None else [x.strip() for x in args.only.split(";")]
        bad = [x for x in only if x not in labels]
        if bad:
            print(f"error: --only {bad[0]!r} is not a setting; allowed: {'; '.join(labels)}",
                  file=sys.stderr)
            return 2
        seeds = [int(s) for s in args.seeds.split(",")]
        todo = [(label, s) for label in only for s in seeds
                if str(s) not in runs.get(label, {}).get("curves", {})]
        with tempfile.TemporaryDirectory(prefix="fedjax-compression-") as work:
            accuracy_runs(args.rounds, args.width, data, pathlib.Path(work), todo, on_done=keep)
        arows, curves = accuracy_rows(runs, brows, args.target, compute_s=args.compute_s)
    text = tables(brows, arows)
    compute = "measured task durations" if args.compute_s is None else \
        f"{args.compute_s:g} s per client task"
    print(f"\nVGG-16 CIFAR head; bytes at width 1.0; accuracy at width {args.width}, "
          f"{args.rounds} rounds, 10 clients; link times modelled with compute = {compute}; "
          f"{time.time() - t0:.0f} s in all\n")
    print(text)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rounds": args.rounds, "width": args.width, "target": args.target,
                               "compute_s": args.compute_s,
                               "bytes": brows, "accuracy": arows, "markdown": text,
                               "wall_s": time.time() - t0}, indent=1, default=float))
    figure(brows, curves, pathlib.Path(args.figure),
           "measured" if args.compute_s is None else f"{args.compute_s:g} s per task")
    return 0


if __name__ == "__main__":
    sys.exit(main())
