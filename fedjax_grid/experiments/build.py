"""Builders: an experiment's parts from its config, outside the engine.

One place turns an ``ExperimentConfig`` into what a federated run (or a
centralized baseline, a benchmark, a notebook) needs:

- ``build_data(cfg)``       -> :class:`ExperimentData` (splits, test arrays, normalisation)
- ``partition_strategy``    -> the forming strategy over the training labels
- ``build_model(cfg, n)``   -> (hashable model key, Flax module), cached per process
- ``build_hparams(cfg)``    -> the clients' ``HParams``
- ``build_algorithm(cfg)``  -> the pure federated algorithm (aggregator, server optimiser, BN mode)
- ``build_experiment(cfg)`` -> all of the above plus the initial server and forming states

``FederatedRun`` only orchestrates rounds over what ``build_experiment`` returns;
the CLI's ``partition-report``, the benchmarks and the notebooks use the same
builders, so all of them see the same data, local sets, model and state.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from fedjax_grid import streams
from fedjax_grid.errors import UserError

#: Sources whose images are resized to ``data.image_size``.
RESIZABLE = ("digits", "textures", "texture_fragments")
#: Training examples the per-channel normalisation is measured on (the first ones).
NORMALISATION_EXAMPLES = 2048


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


@dataclasses.dataclass
class ExperimentData:
    """The data of an experiment as the coordinator holds it.

    train/test: ImageDatasets (random access by index). test_arrays: (uint8 images
    (N, H, W, C), int labels (N,)), at most ``data.max_test_examples``. mean/std:
    per-channel statistics of pixels scaled to [0, 1] (std floored at 1e-3).
    """
    train: Any
    test: Any
    test_arrays: tuple
    mean: tuple
    std: tuple
    source_options: dict

    @property
    def info(self):
        return self.train.info


def normalisation(train, n: int = NORMALISATION_EXAMPLES) -> tuple[tuple, tuple]:
    """Per-channel (mean, std) of the first ``n`` training images, pixels in [0, 1]."""
    sample = train.__getitems__(np.arange(min(len(train), n)))["image"]
    x = sample.astype(np.float64) / 255.0
    return (tuple(float(v) for v in x.mean(axis=(0, 1, 2))),
            tuple(float(max(v, 1e-3)) for v in x.std(axis=(0, 1, 2))))


def build_data(cfg) -> ExperimentData:
    """Both splits, the (capped) test arrays and the normalisation of ``cfg``'s source."""
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    n_test = len(test)
    if cfg.data.max_test_examples is not None:
        n_test = min(n_test, cfg.data.max_test_examples)
    arrays = test.__getitems__(np.arange(n_test))
    mean, std = normalisation(train)
    return ExperimentData(train, test, (arrays["image"], arrays["label"]), mean, std,
                          source_options(cfg))


def partition_strategy(cfg, labels: np.ndarray, *, for_run: bool = True):
    """The forming strategy over ``labels`` (int (D,)); UserError when C > D or -- for a
    run (``for_run``) -- when a local batch is larger than every local set of round 1."""
    from fedjax_grid.partition import make_strategy
    p = cfg.partition
    if p.num_clients > len(labels):
        raise UserError(f"partition.num_clients={p.num_clients} exceeds the {len(labels)} "
                        f"training examples of {cfg.data.source!r}", path="partition.num_clients")
    strategy = make_strategy(p.forming, labels, p.num_clients, p.distribution)
    if for_run:
        check_batch_size(cfg, strategy, len(labels))
    return strategy


def check_batch_size(cfg, strategy, num_train: int) -> None:
    """UserError when ``training.batch_size`` exceeds the largest local set of round 1: a
    batch is padded to its size with repeated rows, so such a batch only costs memory."""
    assignments, _ = strategy.apply(strategy.init(cfg.seed), forming_rng(cfg.seed, 0), 0)
    largest = max((len(a) for a in assignments), default=0)
    b = cfg.training.batch_size
    if b > max(largest, 1):
        raise UserError(f"training.batch_size={b} is invalid: an integer in [1, {largest}] is "
                        f"required (the largest local set of round 1 holds {largest} examples: "
                        f"{num_train} training examples of {cfg.data.source!r} over "
                        f"partition.num_clients={cfg.partition.num_clients})",
                        path="training.batch_size")


def local_sets(cfg, rounds: int = 1, train=None) -> tuple[np.ndarray, list]:
    """``(labels (D,), assignments)`` -- each client's local set (indices into the
    training split) of round ``rounds`` (from 1), drawn from the config alone exactly as
    a run draws them; ``train``: the training split when already loaded."""
    train = load_split(cfg, "train") if train is None else train
    labels = np.asarray(train.labels)
    strategy = partition_strategy(cfg, labels, for_run=False)
    state = strategy.init(cfg.seed)
    for r in range(rounds):  # the 0-based index r = round - 1 keys the randomness
        assignments, state = strategy.apply(state, forming_rng(cfg.seed, r), r)
    return labels, assignments


def forming_rng(seed: int, round_: int) -> np.random.Generator:
    """The generator a forming strategy draws round ``round_``'s local sets from."""
    return streams.rng(seed, streams.FORMING, round_)


def sample_clients(cfg, round_: int) -> np.ndarray:
    """Sorted ids of the clients sampled for 0-based round ``round_``: ``clients_per_round``
    plus ``grid.overcommit`` spares out of ``num_clients``, seeded by (seed, round)."""
    c = cfg.partition.num_clients
    n = min(c, cfg.clients_per_round + cfg.grid.overcommit)
    rng = streams.rng(cfg.seed, streams.SAMPLING, round_)
    return np.sort(rng.choice(c, size=n, replace=False))


def model_key(model_cfg, num_classes: int) -> tuple:
    """Hashable description of a model: (name, classes, sorted kwargs)."""
    return (model_cfg.name, int(num_classes), tuple(sorted(model_cfg.kwargs.items())))


def build_model(cfg, num_classes: int) -> tuple[tuple, Any]:
    """(model key shipped to workers, Flax module) of ``cfg.model`` for ``num_classes``."""
    from fedjax_grid.models import cached_model
    key = model_key(cfg.model, num_classes)
    return key, cached_model(*key)


def build_hparams(cfg):
    """The clients' local-training hyper-parameters (``training.HParams``)."""
    from fedjax_grid.training import HParams
    t = cfg.training
    return HParams(optimizer=t.optimizer, learning_rate=t.lr, momentum=t.momentum,
                   weight_decay=t.weight_decay, batch_size=t.batch_size,
                   epochs=t.local_epochs, prox_mu=t.prox_mu, augment=t.augment,
                   precision=t.precision)


def build_algorithm(cfg):
    """The pure federated algorithm: aggregator, server optimiser, BN mode, norm guard and
    client algorithm (``training.algorithm``, checked against ``training.optimizer``)."""
    from fedjax_grid.federated import NormGuard, make_algorithm, make_server_optimizer
    from fedjax_grid.federated.client_algorithms import make_client_algorithm
    s, t = cfg.server, cfg.training
    guard = None if s.max_norm_ratio is None else NormGuard(max_norm_ratio=s.max_norm_ratio)
    client = make_client_algorithm(t.algorithm, cfg.partition.num_clients)
    if client.optimizers and t.optimizer not in client.optimizers:
        raise UserError(f"training.optimizer={t.optimizer!r} is invalid with training.algorithm="
                        f"{client.name}: allowed are {', '.join(client.optimizers)}",
                        path="training.optimizer")
    return make_algorithm(s.aggregator, make_server_optimizer(s.optimizer),
                          bn_mode=s.bn_mode, norm_guard=guard, client_algorithm=client)


def initial_variables(cfg, model, image_shape: tuple) -> dict:
    """The model's initial variables (numpy) for ``cfg.seed``; image_shape (H, W, C)."""
    import jax
    from fedjax_grid.training import init_variables
    variables = init_variables(model, (1, *image_shape), jax.random.PRNGKey(cfg.seed))
    return jax.tree.map(np.asarray, variables)


@dataclasses.dataclass
class Experiment:
    """Everything a run needs, built from one config (see ``build_experiment``)."""
    config: Any
    data: ExperimentData
    strategy: Any            # forming strategy (init/apply)
    model_key: tuple
    model: Any               # Flax module
    hparams: Any
    algorithm: Any           # pure FedAlgorithm (init/begin)

    def initial_state(self) -> tuple[Any, dict]:
        """(server state of the initial global model, forming state before round 1)."""
        variables = initial_variables(self.config, self.model, self.data.info.image_shape)
        return self.algorithm.init(variables), self.strategy.init(self.config.seed)


def build_experiment(cfg, data: ExperimentData | None = None, strategy=None) -> Experiment:
    """Data and forming strategy (unless given), model, hyper-parameters and algorithm of ``cfg``."""
    data = data if data is not None else build_data(cfg)
    if strategy is None:
        strategy = partition_strategy(cfg, np.asarray(data.train.labels))
    key, model = build_model(cfg, data.info.num_classes)
    return Experiment(cfg, data, strategy, key, model, build_hparams(cfg), build_algorithm(cfg))
