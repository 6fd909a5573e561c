"""Generate the notebooks in this folder (outputs stripped) from the cell texts below.

    python notebooks/_build.py            # (re)write every notebook
    python notebooks/_build.py --check    # exit 1 when a notebook differs from its source here

Each notebook has one code cell tagged ``parameters`` (papermill's convention):
small values by default, scale them up there. Tests execute every notebook with
nbclient after injecting a cell of test parameters right below it.
"""
from __future__ import annotations

import pathlib
import sys
import textwrap

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = pathlib.Path(__file__).resolve().parent


def md(text: str):
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str, *tags: str):
    cell = new_code_cell(textwrap.dedent(text).strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def params(text: str):
    return code("# Parameters: small by default; scale up here.\n" + textwrap.dedent(text).strip(),
                "parameters")


#: Opening of every notebook that runs rounds: where the outputs go.
OUT_SETUP = """
import pathlib, time
OUT = pathlib.Path(OUT_ROOT).expanduser().resolve() / (NAME + time.strftime("-%Y%m%d-%H%M%S"))
OUT.mkdir(parents=True, exist_ok=True)
print("outputs in", OUT)
"""

#: Shared data slices: ../shared/data next to the repository, or $FEDJAX_GRID_SHARED_DATA.
SHARED = """
from fedjax_grid.data import shared_data_dir
SHARED = shared_data_dir()
print("shared data folder:", SHARED, "(present)" if SHARED.is_dir() else "(absent)")
"""

GRID_OPEN = """
from IPython.display import HTML
from fedjax_grid.grid.cluster import open_cluster
# 127.0.0.1 only (nothing listens on other interfaces); SCHEDULER set: a running grid.
grid = open_cluster(cfg.grid, local_directory=str(OUT / "dask"))
display(HTML(f'Dask dashboard: <a href="{grid.dashboard_link}" target="_blank" '
             f'style="text-decoration:underline">{grid.dashboard_link}</a> '
             f'&middot; {len(grid.workers())} workers'))
"""


# ---------------------------------------------------------------------------------------
def nb01():
    return [
        md("""
        # 01 · Quickstart: a federated run on a local Dask cluster

        Digits (bundled with scikit-learn, offline), a narrow VGG-11, 4 clients with IID
        local sets, a `LocalCluster` of worker processes on 127.0.0.1. We run the first
        round by hand with `step()`, the rest with `run()`, then plot the tidy records.
        The same experiment from a shell: `fedjax-grid run --preset quickstart`.
        """),
        params("""
        NAME = "01_quickstart"
        ROUNDS = 3               # federated rounds (the preset has 8)
        NUM_CLIENTS = 4
        WIDTH = 0.125            # VGG channel multiplier (1.0 = the real VGG-11)
        WORKERS = 2              # LocalCluster worker processes
        MAX_TEST_EXAMPLES = 256  # None: the whole test split
        SCHEDULER = None         # "tcp://HOST:8786": use a running grid instead of a LocalCluster
        OUT_ROOT = "../runs/notebooks"
        """),
        code(OUT_SETUP),
        md("## The configuration\nThe typed `ExperimentConfig` the CLI uses: a preset plus overrides."),
        code("""
        from fedjax_grid.experiments import get_preset
        cfg = get_preset("quickstart").with_overrides([
            f"model.kwargs={{width: {WIDTH}, norm: batch, head: cifar}}",
            f"training.rounds={ROUNDS}", f"partition.num_clients={NUM_CLIENTS}",
            f"data.max_test_examples={'null' if MAX_TEST_EXAMPLES is None else MAX_TEST_EXAMPLES}",
            f"grid.workers={WORKERS}", "grid.host=127.0.0.1", "grid.dashboard_address=127.0.0.1:0",
            f"grid.scheduler={'null' if SCHEDULER is None else SCHEDULER}",
        ]).validate()
        print(cfg.to_yaml())
        """),
        md("## The grid\nA `LocalCluster` (or the scheduler given above) with fedjax_grid's worker plugin."),
        code(GRID_OPEN),
        md("The workers, one live table (it counts tasks once a run is attached below):"),
        code("""
        from fedjax_grid.widgets import ClusterPanel
        cluster_panel = ClusterPanel(grid)
        display(cluster_panel)
        """),
        md("""
        ## Rounds, one by one
        `FederatedRun.step()` runs one round and returns its row. Rounds count from 1
        everywhere (records, plots, panels, CLI): the row with `round = 1` is the first
        round, and `run.round` is the number of rounds done.
        """),
        code("""
        from fedjax_grid.grid.engine import FederatedRun
        run = FederatedRun(cfg, out_dir=OUT / "run", grid=grid)
        cluster_panel.records = run   # the table above now counts this run's tasks
        row = run.step()
        print(run.stages.summary())   # start-up: data, model, first round (compiles the model)
        row
        """),
        code("""
        records = run.run(callback=lambda row: cluster_panel.refresh())  # the remaining rounds
        rounds, tasks = records.rounds(), records.tasks()   # also in run.out_dir, with checkpoints
        assert list(rounds["round"]) == list(range(1, ROUNDS + 1)) and (tasks["status"] == "ok").all()
        rounds
        """),
        code("tasks.head(8)"),
        md("## Plots\nEvery function takes the tidy tables, returns the figure and can save a PNG."),
        code("""
        from fedjax_grid import plots
        plots.global_accuracy(rounds, title=f"{cfg.name}: global test accuracy",
                              save=OUT / "global_accuracy.png")
        """),
        code("plots.local_loss(tasks, title=f\"{cfg.name}: local loss across clients\", save=OUT / \"local_loss.png\")"),
        code("plots.worker_timeline(tasks, rounds=rounds, title=f\"{cfg.name}: worker timeline\", save=OUT / \"timeline.png\")"),
        code("""
        import numpy as np
        from fedjax_grid.partition.report import label_table
        assignments, _ = run.strategy.apply(run.strategy.init(cfg.seed), np.random.default_rng([cfg.seed, 11, 0]), 0)
        plots.label_distribution(label_table(run.train.labels, assignments),
                                 title=f"{cfg.name}: local sets of round 1", save=OUT / "labels.png")
        """),
        md("""
        ## The same from widgets
        `ConfigPanel` is generated from `ExperimentConfig` (validation messages in place);
        `RunPanel` runs it in a background thread: the start-up stages with their times, then
        a progress bar and a live dashboard; **Stop** ends the run cleanly after the round in
        flight. Each Run writes a new folder under `OUT/from_widgets/<name>/` (tick *resume* to
        continue the latest one instead). It works before and after the last cell: once the
        grid is closed, Run starts its own cluster from the config.
        """),
        code("""
        from fedjax_grid.widgets import ConfigPanel, RunPanel
        config_panel = ConfigPanel(cfg)
        run_panel = RunPanel(config_panel, grid=grid, runs_root=OUT / "from_widgets")
        display(config_panel, run_panel)
        """),
        md("Continue the notebook's run from a shell (its folder holds its config.json):"),
        code("""
        print(f"fedjax-grid run --resume --out {run.out_dir} --set training.rounds={ROUNDS + 2}")
        """),
        md("Close the grid (the panel above still works: a Run after this starts its own cluster)."),
        code("""
        run_panel.wait(timeout=600)   # a run started from the panel finishes first
        run.close(); grid.close()
        """),
    ]


# ---------------------------------------------------------------------------------------
def nb02():
    return [
        md("""
        # 02 · Data sources and partitions

        The image sources, a gallery of texture fragments, the five distribution types of
        local sets and the four forming strategies (static, dynamic, stochastic, hybrid),
        drawn with `fedjax_grid.partition.report.label_table` and `plots.label_distribution`.
        No cluster is needed here.
        """),
        params("""
        NUM_CLIENTS = 8
        SEED = 0
        ROUNDS_SHOWN = 4          # rounds of the forming strategies
        GALLERY = 12              # images per gallery
        FRAGMENT_SIZE = 128       # texture fragment side in the photo (pixels)
        FRAGMENT_STRIDE = 96      # < size: overlapping fragments
        FRAGMENT_OUT = 64         # side of the fragment fed to the model
        LOAD_SHARED = True        # also show CIFAR-10 / Tiny-ImageNet / DTD when ../shared/data has them
        """),
        code("""
        import numpy as np
        from fedjax_grid import plots
        from fedjax_grid.plots import PlotFigure as Figure  # a Figure that shows itself as PNG
        from fedjax_grid.data import list_sources, load_source
        from fedjax_grid.experiments.config import DISTRIBUTIONS, FORMING
        from fedjax_grid.partition import Distribution, distribute, make_strategy
        from fedjax_grid.partition.report import label_table
        print("sources:", ", ".join(list_sources()))
        """),
        code(SHARED),
        code("""
        def gallery(ds, n=GALLERY, title=""):
            idx = np.linspace(0, len(ds) - 1, n).astype(int)
            batch = ds.__getitems__(idx)
            names = ds.info.class_names
            fig = Figure(figsize=(1.4 * n, 1.9), layout="constrained")
            for i, ax in enumerate(fig.subplots(1, n)):
                img = batch["image"][i]
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray")
                lab = int(batch["label"][i])
                ax.set_title(str(names[lab])[:10] if names else lab, fontsize=8)
                ax.axis("off")
            fig.suptitle(f"{title}: {len(ds)} images {ds.info.image_shape}, {ds.info.num_classes} classes")
            return fig

        digits = load_source("digits", "train", image_size=32)
        gallery(digits, title="digits")
        """),
        code("""
        shared = {"cifar10": "cifar-10-binary-sample.tar.gz", "tiny_imagenet": "tiny-imagenet-200-sample.zip"}
        figs = []
        for source, file in shared.items():
            if LOAD_SHARED and (SHARED / file).exists():
                figs.append(gallery(load_source(source, "train", path=SHARED / file), title=source))
            else:
                print(f"{source}: {SHARED / file} not present, skipped")
        figs[0] if figs else None
        """),
        code("figs[1] if len(figs) > 1 else None"),
        md("""
        ## Texture fragments
        Large texture photos are cut into many small, overlapping fragments (with rotations,
        flips, contrast normalisation) without materialising them: a fragment is an index.
        """),
        code("""
        dtd = SHARED / "dtd-texture-sample.zip"
        if LOAD_SHARED and dtd.exists():
            frags = load_source("texture_fragments", "train", path=dtd, size=FRAGMENT_SIZE,
                                stride=FRAGMENT_STRIDE, angles=(0, 90), flips=True,
                                normalize="standardize", out_size=FRAGMENT_OUT)
            print(f"{len(frags)} fragments from the training photos")
            fig = gallery(frags, title="texture_fragments")
        else:
            print(f"{dtd} not present: no texture gallery")
            fig = None
        fig
        """),
        md("""
        ## Distribution types
        How the training set is dealt to clients: `iid`, `balanced(beta)` (a fraction beta
        from each client's home classes), `stratified(share)` (a fraction share drawn
        class-stratified, the rest from the home classes: the presets' reading of the
        study's "balanced"), `dirichlet(alpha)`, `shards`, `quantity` skew.
        """),
        code("""
        labels = np.asarray(digits.labels)
        specs = {"iid": Distribution("iid"), "balanced": Distribution("balanced", beta=0.8),
                 "stratified": Distribution("stratified", share=0.8),
                 "dirichlet": Distribution("dirichlet", alpha=0.3),
                 "shards": Distribution("shards", shards_per_client=2),
                 "quantity": Distribution("quantity", sigma=0.8)}
        assert set(specs) == set(DISTRIBUTIONS)
        rows = -(-len(specs) // 3)   # 3 per row: readable fonts in a notebook
        fig = Figure(figsize=(11.5, 3.4 * rows), layout="constrained")
        axes = fig.subplots(rows, 3).ravel()
        for ax in axes[len(specs):]:
            ax.remove()
        tables = {}
        for ax, (kind, spec) in zip(axes, specs.items()):
            parts = distribute(labels, NUM_CLIENTS, spec, np.random.default_rng(SEED))
            tables[kind] = label_table(labels, parts)
            plots.label_distribution(tables[kind], ax=ax, annot=False, title=str(spec))
        fig
        """),
        code("""
        import pandas as pd
        pd.DataFrame({kind: t.groupby("client")["count"].sum() for kind, t in tables.items()})
        """),
        md("""
        ## Forming strategies
        How the local sets change between rounds: `static` (fixed), `dynamic` (redrawn every
        round), `stochastic` (resampled), `hybrid(keep)` (a fraction kept). Rounds count from
        1, as in the run records. Below: the share of client 0's examples that were also in
        its local set of the round before.
        """),
        code("""
        from fedjax_grid.experiments.build import forming_rng

        def rounds_of(name, spec):
            \"\"\"{round (from 1): assignments} of one strategy, as a run draws them.\"\"\"
            strategy = make_strategy(name, labels, NUM_CLIENTS, spec, keep=0.5)
            state, out = strategy.init(SEED), {}
            for r in range(1, ROUNDS_SHOWN + 1):   # the run's 0-based index r - 1 keys the randomness
                out[r], state = strategy.apply(state, forming_rng(SEED, r - 1), r - 1)
            return out

        spec = Distribution("balanced", beta=0.8)
        sets = {name: rounds_of(name, spec) for name in FORMING}
        overlap = {name: [len(np.intersect1d(a[r][0], a[r - 1][0])) / max(1, len(a[r][0]))
                          for r in range(2, ROUNDS_SHOWN + 1)] for name, a in sets.items()}
        pd.DataFrame(overlap, index=pd.RangeIndex(2, ROUNDS_SHOWN + 1, name="round"))
        """),
        md("""
        **Why the four round-1 heatmaps below look identical:** with a label-skewed
        distribution (here `balanced`, beta 0.8) every strategy keeps each client's label
        histogram of round 1 -- its home classes and how many examples of each -- and changes
        only *which* examples fill it. A label heatmap therefore cannot tell the strategies
        apart in any round; what differs is the examples themselves, shown after it.
        """),
        code("""
        def heatmaps(tables, title):
            fig = Figure(figsize=(10.5, 7.2), layout="constrained")   # 2 x 2: readable fonts
            for ax, (name, table) in zip(fig.subplots(2, 2).ravel(), tables.items()):
                plots.label_distribution(table, ax=ax, annot=False, title=f"{name}: {title}")
            return fig

        heatmaps({name: label_table(labels, a[1]) for name, a in sets.items()}, "round 1")
        """),
        md("""
        Where they differ: the share of each client's round-1 examples still in its local set
        in a later round (static keeps all of them; dynamic and stochastic redraw; hybrid keeps
        about `keep` = 0.5 of the previous set each round).
        """),
        code("""
        import seaborn as sns
        last = ROUNDS_SHOWN
        kept = pd.DataFrame({name: [len(np.intersect1d(a[last][k], a[1][k])) / max(1, len(a[1][k]))
                                    for k in range(NUM_CLIENTS)] for name, a in sets.items()})
        kept.index.name = "client"
        fig = Figure(figsize=(6.5, 0.35 * NUM_CLIENTS + 1.8), layout="constrained")
        ax = fig.add_subplot()
        sns.heatmap(kept, ax=ax, vmin=0, vmax=1, annot=True, fmt=".0%", cmap="viridis",
                    cbar_kws={"label": "share of round-1 examples kept"})
        ax.set_title(f"round {last}: examples kept since round 1")
        fig
        """),
        md("""
        With `iid` local sets only the sizes are fixed and the labels are redrawn, so by a later
        round the label heatmaps differ too (static still shows its round-1 split):
        """),
        code("""
        iid_sets = {name: rounds_of(name, Distribution("iid")) for name in FORMING}
        heatmaps({name: label_table(labels, a[ROUNDS_SHOWN]) for name, a in iid_sets.items()},
                 f"iid, round {ROUNDS_SHOWN}")
        """),
    ]


# ---------------------------------------------------------------------------------------
def _paper_nb(number, title, intro, preset_prefix, data_file, source, model_kwargs_code,
              param_lines, study_table):
    return [
        md(f"# {number} · {title}\n\n" + textwrap.dedent(intro).strip()),
        params(param_lines),
        code(OUT_SETUP),
        code(SHARED),
        code(f"""
        from fedjax_grid.experiments import get_preset
        DATA_FILE = SHARED / "{data_file}"
        USE_SLICE = DATA_FILE.exists()
        print("data:", DATA_FILE if USE_SLICE else "digits (the {source} slice is absent)")

        def reduced(variant):
            \"\"\"The study's preset, scaled down by the parameters above.\"\"\"
            cfg = get_preset(f"{preset_prefix}-{{variant}}")
            sets = [{model_kwargs_code},
                    f"partition.num_clients={{NUM_CLIENTS}}", f"training.rounds={{ROUNDS}}",
                    f"data.max_test_examples={{'null' if MAX_TEST_EXAMPLES is None else MAX_TEST_EXAMPLES}}",
                    f"grid.workers={{WORKERS}}", "grid.host=127.0.0.1", "grid.dashboard_address=127.0.0.1:0",
                    f"grid.scheduler={{'null' if SCHEDULER is None else SCHEDULER}}"]
            if BATCH_SIZE is not None:
                sets.append(f"training.batch_size={{BATCH_SIZE}}")
            if AUGMENT is not None:
                sets.append(f"training.augment={{str(AUGMENT).lower()}}")
            if USE_SLICE:
                sets.append(f"data.path={{DATA_FILE}}")
            else:
                sets += ["data.source=digits", "data.image_size=32"]
            return cfg.with_overrides(sets).validate()

        configs = {{v: reduced(v) for v in ("independent", "balanced")}}
        print(configs["balanced"].to_yaml())
        """),
        md("The study's settings (full scale) and what this notebook runs:"),
        code(f"""
        import pandas as pd
        study = pd.DataFrame({study_table!r}).set_index("variant")
        here = pd.DataFrame([{{"variant": v, "model": c.model.name, "kwargs": c.model.kwargs,
                              "source": c.data.source, "clients": c.partition.num_clients,
                              "distribution": c.partition.distribution, "share": c.partition.share,
                              "lr": c.training.lr, "batch": c.training.batch_size,
                              "rounds": c.training.rounds}} for v, c in configs.items()]).set_index("variant")
        study.join(here, rsuffix=" (here)")
        """),
        code(GRID_OPEN.replace("cfg.grid", 'configs["independent"].grid')),
        md("## Independent vs balanced\nBoth variants on the same grid, one after the other."),
        code("""
        from fedjax_grid.grid.engine import FederatedRun
        results = {}
        for variant, cfg in configs.items():
            run = FederatedRun(cfg, out_dir=OUT / variant, grid=grid)
            records = run.run(callback=lambda row: print(
                f"{variant} round {row['round']}: accuracy {row['global_accuracy']:.4f} "
                f"({row['clients_ok']}/{row['clients_sampled']} clients, {row['round_time_s']:.1f} s)"))
            results[variant] = records
        rounds = pd.concat([r.rounds().assign(run=v) for v, r in results.items()], ignore_index=True)
        tasks = pd.concat([r.tasks().assign(run=v) for v, r in results.items()], ignore_index=True)
        assert len(rounds) == 2 * ROUNDS
        rounds
        """),
        code("""
        from fedjax_grid import plots
        plots.compare_runs(rounds, metric=["global_accuracy", "global_loss"], save=OUT / "compare.png")
        """),
        code("plots.local_loss(tasks, save=OUT / \"local_loss.png\")"),
        code("plots.time_to_accuracy(rounds, save=OUT / \"time_to_accuracy.png\")"),
        code("""
        from fedjax_grid.partition.report import label_table
        run_b = FederatedRun(configs["balanced"], out_dir=OUT / "partition-only", grid=grid)
        import numpy as np
        a, _ = run_b.strategy.apply(run_b.strategy.init(run_b.config.seed), np.random.default_rng(0), 0)
        plots.label_distribution(label_table(run_b.train.labels, a), annot=False, title="balanced: local sets")
        """),
        code("grid.close()"),
    ]


def nb03():
    return _paper_nb(
        "03", "VGG-16 on CIFAR-10 (the study's settings, reduced)",
        """
        The study trained VGG-16 on CIFAR-10 with 50 clients, lr 0.01, batch 10, for 90
        (independent) and 150 (balanced 0.8, read here as stratified(0.8): 80 % of each local
        set class-stratified, the rest from home classes) rounds: 86.21 % and 85.18 %. Here the same
        presets run reduced (narrow VGG-16, a few clients and rounds) on the CIFAR-10 slice in
        `../shared/data` (or digits when it is absent). Set the parameters to
        `WIDTH = 1.0, NUM_CLIENTS = 50, ROUNDS = None`-like values on a real grid to scale up.
        """,
        "paper-vgg16-cifar10", "cifar-10-binary-sample.tar.gz", "CIFAR-10",
        'f"model.kwargs={{width: {WIDTH}, norm: batch, head: cifar}}"',
        """
        NAME = "03_vgg16_cifar10"
        WIDTH = 0.125             # VGG-16 channel multiplier (study: 1.0)
        NUM_CLIENTS = 4           # study: 50
        ROUNDS = 2                # study: 90 (independent) / 150 (balanced)
        BATCH_SIZE = None         # None: the study's 10
        AUGMENT = None            # None: the preset's (random crop + flip)
        MAX_TEST_EXAMPLES = 256
        WORKERS = 2
        SCHEDULER = None          # "tcp://HOST:8786": a running desktop grid
        OUT_ROOT = "../runs/notebooks"
        """,
        {"variant": ["independent", "balanced"], "study model": ["VGG-16", "VGG-16"],
         "study clients": [50, 50], "study beta": [None, 0.8], "study lr": [0.01, 0.01],
         "study batch": [10, 10], "study rounds": [90, 150],
         "study accuracy %": [86.21, 85.18]})


def nb04():
    return _paper_nb(
        "04", "MobileNetV3 on Tiny-ImageNet (the study's settings, reduced)",
        """
        The study trained MobileNetV3 on Tiny-ImageNet-200: 10 clients IID for 80 rounds
        (50.08 %) and 5 clients balanced (beta 0.9) for 60 rounds (40.31 %), lr 0.001, batch 32.
        Here the presets run reduced (a narrow MobileNetV3, few rounds) on the Tiny-ImageNet
        slice in `../shared/data` (or digits when it is absent).
        """,
        "paper-mobilenetv3-tinyimagenet", "tiny-imagenet-200-sample.zip", "Tiny-ImageNet",
        'f"model.name={MODEL}", f"model.kwargs={{width_multiplier: {WIDTH}}}"',
        """
        NAME = "04_mobilenetv3_tiny_imagenet"
        MODEL = "mobilenet_v3_large"   # or mobilenet_v3_small
        WIDTH = 0.25              # width multiplier (study: 1.0)
        NUM_CLIENTS = 4           # study: 10 (independent) / 5 (balanced)
        ROUNDS = 2                # study: 80 / 60
        BATCH_SIZE = None         # None: the study's 32
        AUGMENT = None            # None: the preset's
        MAX_TEST_EXAMPLES = 256
        WORKERS = 2
        SCHEDULER = None
        OUT_ROOT = "../runs/notebooks"
        """,
        {"variant": ["independent", "balanced"], "study model": ["MobileNetV3", "MobileNetV3"],
         "study clients": [10, 5], "study beta": [None, 0.9], "study lr": [0.001, 0.001],
         "study batch": [32, 32], "study rounds": [80, 60],
         "study accuracy %": [50.08, 40.31]})


# ---------------------------------------------------------------------------------------
def nb05():
    return [
        md("""
        # 05 · A desktop grid: connect to a scheduler, see the desktops, run

        On a real grid, one machine runs `dask scheduler` and every desktop joins it with
        `dask worker tcp://SCHEDULER:8786 --name $(hostname)` (the name labels the desktop in
        tables and plots; see `fedjax-grid certs` for TLS). Give that
        address in `SCHEDULER_ADDRESS`. By default this notebook starts a scheduler and
        `DESKTOPS` workers itself, as subprocesses on 127.0.0.1, to show the same code, and
        stops exactly those processes at the end.
        """),
        params("""
        NAME = "05_desktop_grid"
        SCHEDULER_ADDRESS = None  # "tcp://HOST:8786" of your grid; None: start one here on 127.0.0.1
        DESKTOPS = 2              # workers started here when SCHEDULER_ADDRESS is None
        ROUNDS = 2
        NUM_CLIENTS = 4
        WIDTH = 0.125
        MAX_TEST_EXAMPLES = 256
        OUT_ROOT = "../runs/notebooks"
        """),
        code(OUT_SETUP),
        code("""
        import os, shutil, signal, socket, subprocess, sys

        def free_port():
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return s.getsockname()[1]

        started = []   # only these processes are stopped at the end
        if SCHEDULER_ADDRESS is None:
            dask = shutil.which("dask") or os.path.join(os.path.dirname(sys.executable), "dask")
            port = free_port()
            SCHEDULER_ADDRESS = f"tcp://127.0.0.1:{port}"
            logs = OUT / "logs"; logs.mkdir(exist_ok=True)
            started.append(subprocess.Popen(
                [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                 "--dashboard-address", "127.0.0.1:0", "--no-show"],
                stdout=subprocess.DEVNULL, stderr=open(logs / "scheduler.log", "w")))
            for i in range(DESKTOPS):
                started.append(subprocess.Popen(
                    [dask, "worker", SCHEDULER_ADDRESS, "--host", "127.0.0.1", "--nthreads", "1",
                     "--no-dashboard", "--name", f"desktop-{i}",
                     "--local-directory", str(OUT / f"desktop-{i}")],
                    stdout=subprocess.DEVNULL, stderr=open(logs / f"desktop-{i}.log", "w")))
            print("started PIDs", [p.pid for p in started], "scheduler", SCHEDULER_ADDRESS)
        """),
        code("""
        from fedjax_grid.experiments import get_preset
        cfg = get_preset("quickstart").with_overrides([
            f"model.kwargs={{width: {WIDTH}, norm: batch, head: cifar}}",
            f"training.rounds={ROUNDS}", f"partition.num_clients={NUM_CLIENTS}",
            f"data.max_test_examples={MAX_TEST_EXAMPLES}",
            f"grid.scheduler={SCHEDULER_ADDRESS}", "grid.connect_timeout_s=60",
        ]).validate()
        from fedjax_grid.grid.cluster import open_cluster
        grid = open_cluster(cfg.grid, local_directory=str(OUT / "dask"))
        grid.client.wait_for_workers(DESKTOPS if started else 1, timeout=120)
        print("plugin errors:", grid.plugin_errors or "none")
        """),
        md("## The attached desktops"),
        code("""
        from fedjax_grid.widgets import ClusterPanel
        panel = ClusterPanel(grid)   # one live table; panel.table is the same as a DataFrame
        display(panel)
        """),
        md("## A run on them\nThe client that runs the rounds is this notebook; the training happens on the desktops."),
        code("""
        from fedjax_grid.grid.engine import FederatedRun
        run = FederatedRun(cfg, out_dir=OUT / "run", grid=grid)
        panel.records = run   # the table above counts this run's tasks, refreshed every round
        records = run.run(callback=lambda row: (panel.refresh(), print(
            f"round {row['round']}/{cfg.training.rounds}: accuracy {100 * row['global_accuracy']:.1f} %")))
        tasks = records.tasks()
        assert set(tasks["worker"]) <= set(grid.workers())
        """),
        code("""
        from fedjax_grid import plots
        plots.worker_timeline(tasks, rounds=records.rounds(), save=OUT / "timeline.png")
        """),
        code("""
        # Desktops by name (dask worker --name), by address where a desktop has none.
        desktop = tasks["worker_name"].fillna(tasks["worker"]).rename("desktop")
        tasks.groupby(desktop)[["duration_s", "num_samples"]].agg(["count", "sum"])
        """),
        md("## Clean up\nClose the client; stop only the processes started above (by PID)."),
        code("""
        grid.close()
        for p in started:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in started:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        print("stopped", [p.pid for p in started])
        """),
    ]


# ---------------------------------------------------------------------------------------
def nb06():
    return [
        md("""
        # 06 · Heterogeneity and faults: slow, offline and failing desktops

        Faults are simulated inside real tasks on real workers (`fedjax_grid.grid.faults`):
        per-client slow-down factors, offline clients, random delays, drop-outs (the task
        raises), corrupted (NaN) updates, hangs. A round deadline cuts stragglers (`late`),
        the quorum decides whether a round counts, retries re-submit failed tasks, and
        invalid updates are `rejected`. The scenarios below run on one cluster and are
        compared on one figure.
        """),
        params("""
        NAME = "06_heterogeneity_and_faults"
        ROUNDS = 2
        NUM_CLIENTS = 4
        WIDTH = 0.125
        WORKERS = 2
        MAX_TEST_EXAMPLES = 256
        SLOWDOWN = 4.0            # slowest client trains this many times slower
        DEADLINE_FACTOR = 1.5     # deadline = this x the baseline round time
        SCHEDULER = None
        OUT_ROOT = "../runs/notebooks"
        """),
        code(OUT_SETUP),
        code("""
        from fedjax_grid.experiments import get_preset
        base = get_preset("quickstart").with_overrides([
            f"model.kwargs={{width: {WIDTH}, norm: batch, head: cifar}}",
            f"training.rounds={ROUNDS}", f"partition.num_clients={NUM_CLIENTS}",
            f"data.max_test_examples={MAX_TEST_EXAMPLES}",
            f"grid.workers={WORKERS}", "grid.host=127.0.0.1", "grid.dashboard_address=127.0.0.1:0",
            f"grid.scheduler={'null' if SCHEDULER is None else SCHEDULER}",
        ]).validate()
        cfg = base
        """ ),
        code(GRID_OPEN),
        code("""
        import pandas as pd
        from fedjax_grid.grid import faults
        from fedjax_grid.grid.engine import FederatedRun
        results = {}

        def run_scenario(name, sets):
            cfg = base.with_overrides(sets) if sets else base
            run = FederatedRun(cfg, out_dir=OUT / name, grid=grid)
            results[name] = run.run()
            r = results[name].rounds()
            print(f"{name:28s} accuracy {r['global_accuracy'].iloc[-1]:.4f}  "
                  f"time {r['elapsed_s'].iloc[-1]:.1f} s  ok {r['clients_ok'].sum()}")
            return cfg

        run_scenario("baseline", [])
        base_round = float(results["baseline"].rounds()["round_time_s"].max())
        deadline = round(max(1.0, DEADLINE_FACTOR * base_round), 2)
        print("deadline for the next scenarios:", deadline, "s")
        """),
        md("The slow-down factors each client gets (fixed for the run):"),
        code("""
        slow = base.with_overrides(["faults.enabled=true", f"faults.max_slowdown={SLOWDOWN}"])
        pd.Series({k: faults.speed_factor(slow.faults, slow.seed, k) for k in range(NUM_CLIENTS)},
                  name="speed factor").to_frame().T
        """),
        code("""
        run_scenario("slow, no deadline", ["faults.enabled=true", f"faults.max_slowdown={SLOWDOWN}"])
        run_scenario("slow, deadline", ["faults.enabled=true", f"faults.max_slowdown={SLOWDOWN}",
                                        f"grid.deadline_s={deadline}", "grid.quorum=0.25"])
        run_scenario("offline + drop-outs, quorum 0.5", [
            "faults.enabled=true", "faults.offline_prob=0.25", "faults.dropout_prob=0.3",
            "grid.retries=1", "grid.quorum=0.5"])
        run_scenario("faulty (NaN) updates", ["faults.enabled=true", "faults.error_prob=0.3",
                                              "grid.retries=0", "grid.quorum=0.25"])
        rounds = pd.concat([r.rounds().assign(run=n) for n, r in results.items()], ignore_index=True)
        tasks = pd.concat([r.tasks().assign(run=n) for n, r in results.items()], ignore_index=True)
        """),
        md("## Compared on one figure"),
        code("""
        from fedjax_grid import plots
        plots.compare_runs(rounds, metric=["global_accuracy", "round_time_s"], save=OUT / "scenarios.png")
        """),
        code("""
        status = tasks.pivot_table(index="run", columns="status", values="client", aggfunc="count", fill_value=0)
        status.loc[list(results)]
        """),
        code("""
        quorum = rounds.pivot_table(index="run", values=["quorum", "clients_ok", "round_time_s"], aggfunc="mean")
        quorum.loc[list(results)]
        """),
        code("plots.worker_timeline(tasks, run=\"slow, deadline\", save=OUT / \"timeline_deadline.png\")"),
        code("plots.worker_timeline(tasks, run=\"offline + drop-outs, quorum 0.5\")"),
        code("grid.close()"),
    ]


NOTEBOOKS = {
    "01_quickstart": nb01,
    "02_data_and_partitions": nb02,
    "03_vgg16_cifar10": nb03,
    "04_mobilenetv3_tiny_imagenet": nb04,
    "05_desktop_grid": nb05,
    "06_heterogeneity_and_faults": nb06,
}


def build(name: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=NOTEBOOKS[name]())
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):  # stable ids: rebuilding gives identical files
        cell["id"] = f"{name[:2]}-{i:02d}"
    return nb


def text_of(nb) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check = "--check" in argv
    stale = []
    for name in NOTEBOOKS:
        path = HERE / f"{name}.ipynb"
        text = text_of(build(name))
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print("wrote", path)
    if stale:
        print("out of date (run python notebooks/_build.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
