# %% [markdown]
# # 01 · Quickstart: a federated run on a local Dask cluster
#
# Digits (bundled with scikit-learn, offline), a narrow VGG-11, 4 clients with IID
# local sets, a `LocalCluster` of worker processes on 127.0.0.1. We run the first
# round by hand with `step()`, the rest with `run()`, then plot the tidy records.
# The same experiment from a shell: `fedjax-grid run --preset quickstart`.

# %% tags=["parameters"]
# Parameters: small by default; scale up here.
NAME = "01_quickstart"
ROUNDS = 3               # federated rounds (the preset has 8)
NUM_CLIENTS = 4
WIDTH = 0.125            # VGG channel multiplier (1.0 = the real VGG-11)
WORKERS = 2              # LocalCluster worker processes
MAX_TEST_EXAMPLES = 256  # None: the whole test split
SCHEDULER = None         # "tcp://HOST:8786": use a running grid instead of a LocalCluster
OUT_ROOT = "../runs/notebooks"

# %%
from fedjax_grid import notebook_dir

OUT = notebook_dir(OUT_ROOT, NAME)   # OUT_ROOT/NAME-YYYYmmdd-HHMMSS

# %% [markdown]
# ## The configuration
# The typed `ExperimentConfig` the CLI uses: a preset plus overrides.

# %%
from fedjax_grid import get_preset, scaled_down

cfg = scaled_down(get_preset("quickstart"), model_kwargs={"width": WIDTH, "norm": "batch", "head": "cifar"},
                  clients=NUM_CLIENTS, rounds=ROUNDS, max_test_examples=MAX_TEST_EXAMPLES,
                  workers=WORKERS, scheduler=SCHEDULER)
print(cfg.to_yaml())

# %% [markdown]
# ## The grid
# A `LocalCluster` (or the scheduler given above) with fedjax_grid's worker plugin.

# %%
from IPython.display import HTML, display

from fedjax_grid import dashboard_html, open_cluster

# 127.0.0.1 only (nothing listens on other interfaces); SCHEDULER set: a running grid.
grid = open_cluster(cfg.grid, local_directory=str(OUT / "dask"))
display(HTML(dashboard_html(grid)))

# %% [markdown]
# The workers, one live table (it counts tasks once a run is attached below):

# %%
from IPython.display import display

from fedjax_grid import ClusterPanel

cluster_panel = ClusterPanel(grid)
display(cluster_panel)

# %% [markdown]
# ## Rounds, one by one
# `FederatedRun.step()` runs one round and returns its row. Rounds count from 1
# everywhere (records, plots, panels, CLI): the row with `round = 1` is the first
# round, and `run.round` is the number of rounds done.

# %%
from fedjax_grid import FederatedRun

run = FederatedRun(cfg, out_dir=OUT / "run", grid=grid)
cluster_panel.records = run   # the table above now counts this run's tasks
row = run.step()
print(run.stages.summary())   # start-up: data, model, first round (compiles the model)
row

# %%
from fedjax_grid import RoundBar

# the remaining rounds, with a progress bar; the cluster table follows them
records = run.run(callback=RoundBar(run, also=lambda row: cluster_panel.refresh()))
rounds, tasks = records.rounds(), records.tasks()   # also in run.out_dir, with checkpoints
assert list(rounds["round"]) == list(range(1, ROUNDS + 1)) and (tasks["status"] == "ok").all()
rounds

# %%
tasks.head(8)

# %% [markdown]
# ## Plots
# Every function takes the tidy tables, returns the figure and can save a PNG.

# %%
from fedjax_grid import plots

plots.global_accuracy(rounds, title=f"{cfg.name}: global test accuracy",
                      save=OUT / "global_accuracy.png")

# %%
plots.local_loss(tasks, title=f"{cfg.name}: local loss across clients", save=OUT / "local_loss.png")

# %%
plots.worker_timeline(tasks, rounds=rounds, title=f"{cfg.name}: worker timeline", save=OUT / "timeline.png")

# %%
from fedjax_grid import forming_rng, label_table

assignments, _ = run.strategy.apply(run.strategy.init(cfg.seed), forming_rng(cfg.seed, 0), 0)
plots.label_distribution(label_table(run.train.labels, assignments),
                         title=f"{cfg.name}: local sets of round 1", save=OUT / "labels.png")

# %% [markdown]
# ## The same from widgets
# `ConfigPanel` is generated from `ExperimentConfig` (validation messages in place; only
# the fields of the chosen `server.mode`); `RunPanel` runs it in a background thread. Run
# first measures one training step of the model and shows the estimated wall time and
# bytes -- **Estimate** shows it without running; a run estimated above 10 minutes (a
# full-scale study preset from the *preset* list, say) waits for **Start anyway** or
# **Cancel**. Then the start-up stages with their times, a progress bar and a live
# dashboard; **Stop** ends the run cleanly after the round in flight. Each Run writes a
# new folder under `OUT/from_widgets/<name>/` (tick *resume* to continue the latest one
# instead) with its records and figures. It works before and after the last cell: once
# the grid is closed, Run starts its own cluster from the config.

# %%
from IPython.display import display

from fedjax_grid import ConfigPanel, RunPanel

config_panel = ConfigPanel(cfg, path=str(OUT / "experiment.json"))   # Save JSON goes there
run_panel = RunPanel(config_panel, grid=grid, runs_root=OUT / "from_widgets")
display(config_panel, run_panel)

# %% [markdown]
# ## The runs of this notebook
# `RunsPanel` lists the runs in a folder -- the notebook's own run and every run started
# from the panel above (it refreshes after each) -- with their mode, status, rounds, best
# accuracy and wall time; tick some and **Plot** compares them side by side, **Export to
# TensorBoard** writes their per-round scalars as event files.

# %%
from fedjax_grid import RunsPanel

runs_panel = RunsPanel(OUT, grid=grid, follow=run_panel)
display(runs_panel)

# %% [markdown]
# Continue the notebook's run from a shell (its folder holds its config.json):

# %%
print(f"fedjax-grid run --resume --out {run.out_dir} --set training.rounds={ROUNDS + 2}")

# %% [markdown]
# Close the grid (the panel above still works: a Run after this starts its own cluster).

# %%
run_panel.wait(timeout=600)   # a run started from the panel finishes first
run.close()
grid.close()
