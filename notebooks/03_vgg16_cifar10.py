# %% [markdown]
# # 03 · VGG-16 on CIFAR-10 (the study's settings, reduced)
#
# The study trained VGG-16 on CIFAR-10 with 50 clients, lr 0.01, batch 10, for 90
# (independent) and 150 (balanced 0.8, read here as stratified(0.8): 80 % of each local
# set class-stratified, the rest from home classes) rounds: 86.21 % and 85.18 %. Here the same
# presets run reduced (narrow VGG-16, a few clients and rounds) on the CIFAR-10 slice in
# `../shared/data` (or digits when it is absent). Set the parameters to
# `WIDTH = 1.0, NUM_CLIENTS = 50, ROUNDS = None`-like values on a real grid to scale up.

# %% tags=["parameters"]
# Parameters: small by default; scale up here.
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

# %%
from fedjax_grid import notebook_dir

OUT = notebook_dir(OUT_ROOT, NAME)   # OUT_ROOT/NAME-YYYYmmdd-HHMMSS

# %%
from fedjax_grid import shared_data_dir

SHARED = shared_data_dir()
print("shared data folder:", SHARED, "(present)" if SHARED.is_dir() else "(absent)")

# %%
from fedjax_grid import get_preset, scaled_down

DATA_FILE = SHARED / "cifar-10-binary-sample.tar.gz"
USE_SLICE = DATA_FILE.exists()
print("data:", DATA_FILE if USE_SLICE else "digits (the CIFAR-10 slice is absent)")

def reduced(variant):
    """The study's preset, scaled down by the parameters above."""
    cfg = get_preset(f"paper-vgg16-cifar10-{variant}")
    extra = [f"data.path={DATA_FILE}"] if USE_SLICE else ["data.source=digits", "data.image_size=32"]
    kwargs = {"width": WIDTH, "norm": "batch", "head": "cifar"}
    return scaled_down(cfg, model_kwargs=kwargs, clients=NUM_CLIENTS, rounds=ROUNDS,
                       max_test_examples=MAX_TEST_EXAMPLES, workers=WORKERS, scheduler=SCHEDULER,
                       batch_size=BATCH_SIZE, augment=AUGMENT, extra=tuple(extra))

configs = {v: reduced(v) for v in ("independent", "balanced")}
print(configs["balanced"].to_yaml())

# %% [markdown]
# The study's settings (full scale) and what this notebook runs:

# %%
from fedjax_grid import study_table

study_table(configs, {v: "paper-vgg16-cifar10-" + v for v in configs})

# %%
from IPython.display import HTML, display

from fedjax_grid import dashboard_html, open_cluster

# 127.0.0.1 only (nothing listens on other interfaces); SCHEDULER set: a running grid.
grid = open_cluster(configs["independent"].grid, local_directory=str(OUT / "dask"))
display(HTML(dashboard_html(grid)))

# %% [markdown]
# ## Independent vs balanced
# Both variants on the same grid, one after the other, each with a progress bar. A
# one-round warm-up run comes first: the workers compile the model there, so neither
# variant's times include compilation and the comparison does not depend on the order.

# %%
from fedjax_grid import run_variants

rounds, tasks = run_variants(configs, grid, OUT)   # a leading run column
assert len(rounds) == 2 * ROUNDS
rounds

# %%
from fedjax_grid import plots

plots.compare_runs(rounds, metric=["global_accuracy", "global_loss"], save=OUT / "compare.png")

# %%
plots.local_loss(tasks, save=OUT / "local_loss.png")

# %%
plots.time_to_accuracy(rounds, save=OUT / "time_to_accuracy.png")

# %%
# The local sets of the balanced run's first round, from the config alone (no run).
from fedjax_grid import label_table, local_sets

labels, sets = local_sets(configs["balanced"], rounds=1)
plots.label_distribution(label_table(labels, sets), annot=False, title="balanced: local sets of round 1")

# %%
grid.close()
