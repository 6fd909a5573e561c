# %% [markdown]
# # 02 · Data sources and partitions
#
# The image sources, a gallery of texture fragments, the five distribution types of
# local sets and the four forming strategies (static, dynamic, stochastic, hybrid),
# drawn with `fedjax_grid.partition.report.label_table` and `plots.label_distribution`.
# No cluster is needed here.

# %% tags=["parameters"]
# Parameters: small by default; scale up here.
NUM_CLIENTS = 8
SEED = 0
ROUNDS_SHOWN = 4          # rounds of the forming strategies
GALLERY = 12              # images per gallery
FRAGMENT_SIZE = 128       # texture fragment side in the photo (pixels)
FRAGMENT_STRIDE = 96      # < size: overlapping fragments
FRAGMENT_OUT = 64         # side of the fragment fed to the model
LOAD_SHARED = True        # also show CIFAR-10 / Tiny-ImageNet / DTD when ../shared/data has them

# %%
import numpy as np

from fedjax_grid import (
    DISTRIBUTIONS,
    FORMING,
    Distribution,
    distribute,
    label_table,
    list_sources,
    load_source,
    make_strategy,
    plots,
)
from fedjax_grid import PlotFigure as Figure  # a Figure that shows itself as PNG

print("sources:", ", ".join(list_sources()))

# %%
from fedjax_grid import shared_data_dir

SHARED = shared_data_dir()
print("shared data folder:", SHARED, "(present)" if SHARED.is_dir() else "(absent)")


# %%
def gallery(ds, n=GALLERY, title=""):
    """n images of ``ds`` in a row, each titled with its whole class name (wrapped, not cut)."""
    import textwrap
    idx = np.linspace(0, len(ds) - 1, n).astype(int)
    batch = ds.__getitems__(idx)
    names = ds.info.class_names
    labels = [str(names[int(k)]) if names else str(int(k)) for k in batch["label"]]
    wrapped = [textwrap.fill(name.replace("_", " "), 12) for name in labels]
    lines = max(w.count("\n") + 1 for w in wrapped)
    fig = Figure(figsize=(1.4 * n, 1.7 + 0.18 * lines), layout="constrained")
    for i, ax in enumerate(fig.subplots(1, n)):
        img = batch["image"][i]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray")
        ax.set_title(wrapped[i], fontsize=7.5)
        ax.axis("off")
    fig.suptitle(f"{title}: {len(ds)} images {ds.info.image_shape}, {ds.info.num_classes} classes")
    return fig

digits = load_source("digits", "train", image_size=32)
gallery(digits, title="digits")

# %%
shared = {"cifar10": "cifar-10-binary-sample.tar.gz", "tiny_imagenet": "tiny-imagenet-200-sample.zip"}
figs = []
for source, file in shared.items():
    if LOAD_SHARED and (SHARED / file).exists():
        figs.append(gallery(load_source(source, "train", path=SHARED / file), title=source))
    else:
        print(f"{source}: {SHARED / file} not present, skipped")
figs[0] if figs else None

# %%
figs[1] if len(figs) > 1 else None

# %% [markdown]
# ## Texture fragments
# Large texture photos are cut into many small, overlapping fragments (with rotations,
# flips, contrast normalisation) without materialising them: a fragment is an index.

# %%
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

# %% [markdown]
# ## Distribution types
# How the training set is dealt to clients: `iid`, `balanced(beta)` (a fraction beta
# from each client's home classes), `stratified(share)` (a fraction share drawn
# class-stratified, the rest from the home classes: the presets' reading of the
# study's "balanced"), `dirichlet(alpha)`, `shards`, `quantity` skew, and every other
# kind registered in `DISTRIBUTIONS` (with its defaults unless set here).

# %%
labels = np.asarray(digits.labels)
shown_params = {"balanced": {"beta": 0.8}, "stratified": {"share": 0.8},
                "dirichlet": {"alpha": 0.3}, "shards": {"shards_per_client": 2},
                "quantity": {"sigma": 0.8}}
specs = {kind: Distribution(kind, **shown_params.get(kind, {})) for kind in DISTRIBUTIONS}
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

# %%
import pandas as pd

pd.DataFrame({kind: t.groupby("client")["count"].sum() for kind, t in tables.items()})

# %% [markdown]
# ## Forming strategies
# How the local sets change between rounds: `static` (fixed), `dynamic` (redrawn every
# round), `stochastic` (resampled), `hybrid(keep)` (a fraction kept). Rounds count from
# 1, as in the run records. Below: the share of client 0's examples that were also in
# its local set of the round before.

# %%
from fedjax_grid import forming_rng


def rounds_of(name, spec):
    """{round (from 1): assignments} of one strategy, as a run draws them."""
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


# %% [markdown]
# **Why the four round-1 heatmaps below look identical:** with a label-skewed
# distribution (here `balanced`, beta 0.8) every strategy keeps each client's label
# histogram of round 1 -- its home classes and how many examples of each -- and changes
# only *which* examples fill it. A label heatmap therefore cannot tell the strategies
# apart in any round; what differs is the examples themselves, shown after it.

# %%
def heatmaps(tables, title):
    fig = Figure(figsize=(10.5, 7.2), layout="constrained")   # 2 x 2: readable fonts
    for ax, (name, table) in zip(fig.subplots(2, 2).ravel(), tables.items()):
        plots.label_distribution(table, ax=ax, annot=False, title=f"{name}: {title}")
    return fig

heatmaps({name: label_table(labels, a[1]) for name, a in sets.items()}, "round 1")

# %% [markdown]
# Where they differ: the share of each client's round-1 examples still in its local set
# in a later round (static keeps all of them; dynamic and stochastic redraw; hybrid keeps
# about `keep` = 0.5 of the previous set each round).

# %%
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

# %% [markdown]
# With `iid` local sets only the sizes are fixed and the labels are redrawn, so by a later
# round the label heatmaps differ too (static still shows its round-1 split):

# %%
iid_sets = {name: rounds_of(name, Distribution("iid")) for name in FORMING}
heatmaps({name: label_table(labels, a[ROUNDS_SHOWN]) for name, a in iid_sets.items()},
         f"iid, round {ROUNDS_SHOWN}")
