# %% [markdown]
# # 04 · MobileNetV3 on Tiny-ImageNet (the study's settings, reduced)
#
# The study trained MobileNetV3 on Tiny-ImageNet-200: 10 clients IID for 80 rounds
# (50.08 %) and 5 clients balanced (beta 0.9) for 60 rounds (40.31 %), lr 0.001, batch 32.
# Here the presets run reduced (a narrow MobileNetV3, few rounds) on the Tiny-ImageNet
# slice in `../shared/data` (or digits when it is absent).

# %% tags=["parameters"]
# Parameters: small by default; scale up here.
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

# %%
from fedjax_grid import notebook_dir

OUT = notebook_dir(OUT_ROOT, NAME)   # OUT_ROOT/NAME-YYYYmmdd-HHMMSS

# %%
from fedjax_grid import shared_data_dir

SHARED = shared_data_dir()
print("shared data folder:", SHARED, "(present)" if SHARED.is_dir() else "(absent)")

# %%
from fedjax_grid import get_preset, scaled_down

DATA_FILE = SHARED / "tiny-imagenet-200-sample.zip"
USE_SLICE = DATA_FILE.exists()
print("data:", DATA_FILE if USE_SLICE else "digits (the Tiny-ImageNet slice is absent)")

def reduced(variant):
    """The study's preset, scaled down by the parameters above."""
    cfg = get_preset(f"paper-mobilenetv3-tinyimagenet-{variant}")
    extra = [f"data.path={DATA_FILE}"] if USE_SLICE else ["data.source=digits", "data.image_size=32"]
    extra.append(f"model.name={MODEL}")
    return scaled_down(cfg, model_kwargs={"width_multiplier": WIDTH}, clients=NUM_CLIENTS, rounds=ROUNDS,
                       max_test_examples=MAX_TEST_EXAMPLES, workers=WORKERS, scheduler=SCHEDULER,
                       batch_size=BATCH_SIZE, augment=AUGMENT, extra=tuple(extra))

configs = {v: reduced(v) for v in ("independent", "balanced")}
print(configs["balanced"].to_yaml())

# %% [markdown]
# The study's settings (full scale) and what this notebook runs:

# %%
from fedjax_grid import study_table

study_table(configs, {v: "paper-mobilenetv3-tinyimagenet-" + v for v in configs})

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
