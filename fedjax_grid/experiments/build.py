"""Build an experiment's data and partition strategy from its config.

Shared by the engine (``grid.engine.FederatedRun``) and the CLI's
``partition-report``, so both see the same local sets for the same config.
"""
from __future__ import annotations

import numpy as np

from fedjax_grid.errors import UserError

#: Sources whose images are resized to ``data.image_size``.
RESIZABLE = ("digits", "textures", "texture_fragments")


def source_options(cfg) -> dict:
    """Keyword arguments of ``data.load_source`` for this config (image_size where it applies)."""
    opts = dict(cfg.data.options)
    if cfg.data.image_size is not None and cfg.data.source in RESIZABLE:
        opts["image_size"] = cfg.data.image_size
    return opts


def load_split(cfg, split: str):
    """The config's data set split ('train' or 'test') as an ImageDataset."""
    from fedjax_grid.data import load_source
    return load_source(cfg.data.source, split, path=cfg.data.path, data_dir=cfg.data.data_dir,
                       **source_options(cfg))


def partition_strategy(cfg, labels: np.ndarray):
    """The forming strategy over ``labels`` (int (D,)); UserError when C > D."""
    from fedjax_grid.partition import Distribution, make_strategy
    p = cfg.partition
    if p.num_clients > len(labels):
        raise UserError(f"partition.num_clients={p.num_clients} exceeds the {len(labels)} "
                        f"training examples of {cfg.data.source!r}")
    dist = Distribution(kind=p.distribution, beta=p.beta, share=p.share, alpha=p.alpha,
                        shards_per_client=p.shards_per_client, sigma=p.sigma)
    return make_strategy(p.forming, labels, p.num_clients, dist, keep=p.keep)


def forming_rng(seed: int, round_: int) -> np.random.Generator:
    """The generator a forming strategy draws round ``round_``'s local sets from."""
    return np.random.default_rng([seed, 11, round_])
