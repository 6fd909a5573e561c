"""The experiment configuration: one typed, validated, serialisable object.

``ExperimentConfig`` is what the CLI (``--preset``/``--config``/``--set``), the
notebooks and the widgets all build. It round-trips through JSON and YAML
(``to_dict``/``from_dict``, ``save``/``load``), and ``validate()`` turns every
bad value into a one-line :class:`~fedjax_grid.errors.UserError` naming the
value and what is allowed.

Sections (dotted keys for ``--set``, e.g. ``training.lr=0.01``; a bare field
name such as ``lr=0.01`` resolves to the first section holding it in the
order training, partition, data, model, grid, faults, server):

- ``model``     which network and its constructor arguments
- ``data``      source, its archive/path, data directory, shipped/resident mode
- ``partition`` distribution type, forming strategy, their parameters, C
- ``training``  rounds, local epochs, optimiser, lr, batch sizes
- ``server``    aggregator, server optimiser, BatchNorm handling
- ``grid``      cluster, deadline, quorum, retries, compilation cache
- ``faults``    heterogeneity and fault simulation (off by default)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pathlib
import re
from typing import Any, Optional, get_type_hints

import yaml

from fedjax_grid.errors import UserError, show, show_path
from fedjax_grid.experiments.safe_yaml import load_bounded

from fedjax_grid.experiments.safe_yaml import MAX_BYTES as MAX_CONFIG_BYTES  # noqa: E402

#: Upper bounds of counts that have no sane meaning beyond them (stated in the errors).
MAX_ROUNDS = 100_000
MAX_LOCAL_EPOCHS = 10_000
MAX_CLIENTS = 1_000_000
MAX_BATCH = 1_000_000
MAX_SEED = 2 ** 32 - 1
#: Longest time setting (seconds): one week.
MAX_SECONDS = 7 * 24 * 3600.0

MODELS = ("vgg11", "vgg13", "vgg16", "vgg19", "mobilenet_v3_small", "mobilenet_v3_large")
SOURCES = ("digits", "cifar10", "cifar100", "tiny_imagenet", "textures", "texture_fragments")
DISTRIBUTIONS = ("iid", "balanced", "stratified", "dirichlet", "shards", "quantity")
FORMING = ("static", "dynamic", "stochastic", "hybrid")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
AGGREGATORS = ("mean", "median", "trimmed_mean", "clipped_mean")
SERVER_OPTIMIZERS = ("fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad")
DATA_MODES = ("shipped", "resident")
BN_MODES = ("recalibrate", "pooled", "local", "aggregate")
ATTACKS = ("scale", "signflip", "random")


@dataclasses.dataclass
class ModelConfig:
    name: str = "vgg11"
    #: Constructor arguments of ``fedjax_grid.models.get_model`` (e.g. width, norm, head).
    kwargs: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DataConfig:
    source: str = "digits"
    #: Archive or folder of the source (None: the default place / bundled data).
    path: Optional[str] = None
    #: Where prepared (array_record) copies live; None: the default data dir.
    data_dir: Optional[str] = None
    #: Side length in pixels the images are resized to (digits, textures), None: native.
    image_size: Optional[int] = 32
    #: 'shipped': the coordinator sends each client's examples with its task;
    #: 'resident': each worker opens the prepared data set and receives indices.
    mode: str = "shipped"
    #: Evaluate the global model on at most this many test examples (None: all).
    max_test_examples: Optional[int] = None
    #: Extra keyword arguments of the source loader (e.g. fragment size, stride).
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PartitionConfig:
    num_clients: int = 4
    distribution: str = "iid"
    #: balanced(beta): fraction of a client's samples drawn from its home classes, in [0, 1].
    beta: float = 0.8
    #: stratified(share): fraction of a client's samples drawn class-stratified, in [0, 1].
    share: float = 0.8
    #: dirichlet(alpha) concentration, > 0.
    alpha: float = 0.5
    shards_per_client: int = 2
    #: quantity skew: sigma of the log-normal client sizes.
    sigma: float = 0.5
    forming: str = "static"
    #: hybrid(keep): fraction of the previous local set a client keeps, in [0, 1].
    keep: float = 0.5


@dataclasses.dataclass
class TrainingConfig:
    rounds: int = 10
    #: Clients sampled per round (None: all C clients).
    clients_per_round: Optional[int] = None
    local_epochs: int = 1
    optimizer: str = "momentum"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 32
    test_batch_size: int = 256
    #: FedProx proximal coefficient mu (0: FedAvg).
    prox_mu: float = 0.0
    augment: bool = False
    #: Evaluate the global model every this many rounds (and always after the last).
    eval_every: int = 1


@dataclasses.dataclass
class ServerConfig:
    aggregator: str = "mean"
    #: trimmed_mean: fraction trimmed at each end; clipped_mean: max update norm.
    trim_fraction: float = 0.1
    clip_norm: float = 10.0
    optimizer: str = "fedavg"
    lr: float = 1.0
    momentum: float = 0.9
    #: BatchNorm statistics of the global model: 'recalibrate' (re-estimated exactly on
    #: bn_calibration_examples training examples by the coordinator after each server
    #: step), 'pooled' (the clients' exact moments of their final local models, pooled),
    #: 'local' (kept by each client, FedBN; the server's own are recalibrated) or
    #: 'aggregate' (mean of the clients' running averages: biased, for earlier runs).
    bn_mode: str = "recalibrate"
    #: Training examples (a fixed seeded subset) the coordinator re-estimates BatchNorm
    #: statistics on in bn_mode 'recalibrate' and 'local'.
    bn_calibration_examples: int = 2048
    #: Reject updates whose norm exceeds this multiple of the median accepted norm (None: off).
    max_norm_ratio: Optional[float] = None
    #: 'sync': rounds with a barrier (FedAvg/FedOpt/FedProx); 'async': buffered
    #: asynchronous aggregation (FedBuff): no barrier, one server update per buffer.
    mode: str = "sync"
    #: async: client tasks kept in flight (None: training.clients_per_round, i.e. C).
    concurrency: Optional[int] = None
    #: async: deltas per server update (None: max(1, concurrency // 2)).
    buffer_size: Optional[int] = None
    #: async: staleness weighting {name: constant | polynomial | hinge, ...its params}.
    staleness: dict = dataclasses.field(default_factory=lambda: {"name": "polynomial", "a": 0.5})
    #: async: deltas staler than this many server updates are dropped (recorded).
    max_staleness: int = 10


@dataclasses.dataclass
class GridConfig:
    #: Address of a running Dask scheduler (tcp://HOST:8786); None: an embedded LocalCluster.
    scheduler: Optional[str] = None
    workers: int = 2
    threads_per_worker: int = 1
    host: str = "127.0.0.1"
    dashboard_address: Optional[str] = "127.0.0.1:0"
    local_directory: Optional[str] = None
    #: Seconds a round waits for client updates (None: no deadline).
    deadline_s: Optional[float] = None
    #: Minimum fraction of the sampled clients that must report for the round to count.
    quorum: float = 0.5
    #: Extra clients sampled per round beyond clients_per_round; the first to finish are kept.
    overcommit: int = 0
    #: Re-submissions of a client task that failed or was lost with its worker.
    retries: int = 2
    #: JAX persistent compilation cache on the coordinator and workers
    #: (None: $FEDJAX_GRID_COMPILE_CACHE or ~/.cache/fedjax_grid/jax on each machine).
    compile_cache_dir: Optional[str] = None
    #: Dask TLS security: paths produced by ``fedjax-grid certs`` (None: plain TCP).
    tls_dir: Optional[str] = None
    #: Seconds to wait for the scheduler / workers to appear.
    connect_timeout_s: float = 30.0
    #: Consecutive failed tasks after which a worker is quarantined for the run (0: never).
    quarantine_after: int = 3
    #: Seconds the coordinator waits for a healthy worker when none is connected (all
    #: desktops gone) before it stops with a resumable checkpoint (exit 2).
    wait_for_workers_s: float = 60.0


@dataclasses.dataclass
class FaultConfig:
    """Heterogeneity and fault simulation, applied inside real tasks on real workers."""
    enabled: bool = False
    #: Per-client slow-down factors are drawn log-uniformly from [1, max_slowdown].
    max_slowdown: float = 1.0
    #: Probability that a client is offline in a round (availability windows).
    offline_prob: float = 0.0
    #: Random extra delay per task, uniform in [0, max_delay_s] seconds.
    max_delay_s: float = 0.0
    #: Probability that a task drops out (raises) after training.
    dropout_prob: float = 0.0
    #: Probability that a task returns a corrupted (NaN) update.
    error_prob: float = 0.0
    #: Probability that a task hangs (sleeps hang_s seconds) before returning.
    hang_prob: float = 0.0
    hang_s: float = 60.0
    #: Fraction of the C clients that are hostile for the whole run (chosen by seed).
    attack_fraction: float = 0.0
    #: What a hostile client sends: 'scale' (its update x attack_scale), 'signflip'
    #: (-attack_scale x its update) or 'random' (noise of attack_scale x its update's norm).
    attack: str = "scale"
    attack_scale: float = 10.0


@dataclasses.dataclass
class ExperimentConfig:
    name: str = "experiment"
    seed: int = 0
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    partition: PartitionConfig = dataclasses.field(default_factory=PartitionConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    grid: GridConfig = dataclasses.field(default_factory=GridConfig)
    faults: FaultConfig = dataclasses.field(default_factory=FaultConfig)
    #: Where records, checkpoints and plots go (None: runs/<name>).
    out_dir: Optional[str] = None

    # -- serialisation -------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        if not isinstance(d, dict):
            raise UserError(f"config must be a mapping of sections, got {type(d).__name__}")
        return _build(cls, d, "")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path) -> pathlib.Path:
        path = pathlib.Path(path)
        text = self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> "ExperimentConfig":
        path = pathlib.Path(path)
        name = show_path(path)
        if path.is_dir():
            raise UserError(f"config file {name} is a directory; allowed: a JSON/YAML file")
        if not path.exists():
            raise UserError(f"config file {name} does not exist")
        if not path.is_file():
            raise UserError(f"config file {name} is not a regular file (a device, pipe or "
                            "socket); allowed: a JSON/YAML file")
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
            text = raw.decode("utf-8")
            d = load_bounded(text, f"config file {name}")  # JSON is a subset of YAML
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"config file {name} is not valid JSON/YAML: {show(first, 200)[1:-1]}") from None
        return cls.from_dict(d or {})

    def fingerprint(self) -> str:
        """Hash of everything that determines the trajectory of a run.

        Excludes what may change between an interrupted run and its resume:
        the number of rounds, the output directory and the cluster settings.
        """
        d = self.to_dict()
        d["training"].pop("rounds")
        d.pop("out_dir")
        d.pop("grid")
        d.pop("name")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    # -- overrides -------------------------------------------------------
    def with_overrides(self, assignments: list[str]) -> "ExperimentConfig":
        """Apply ``key=value`` strings (values parsed as YAML scalars)."""
        d = self.to_dict()
        for item in assignments:
            if "=" not in item:
                raise UserError(f"--set {show(item)} is not of the form key=value")
            key, raw = item.split("=", 1)
            key = key.strip()
            try:
                value = load_bounded(raw, f"--set {show(key)}") if raw.strip() != "" else None
            except yaml.YAMLError:
                value = raw
            path = _resolve_key(key)
            target = d
            for part in path[:-1]:
                target = target[part]
            if path[-1] == "kwargs" or path[-1] == "options":
                if not isinstance(value, dict):
                    raise UserError(f"--set {key}={show(raw)}: a mapping like {{width: 0.25}} is required")
            target[path[-1]] = value
        return ExperimentConfig.from_dict(d)

    def replace(self, **sections) -> "ExperimentConfig":
        return dataclasses.replace(self, **sections)

    # -- validation ------------------------------------------------------
    def validate(self) -> "ExperimentConfig":
        """Check every value; raise a one-line UserError on the first bad one."""
        m, da, p, t, s, g, f = (self.model, self.data, self.partition, self.training,
                                self.server, self.grid, self.faults)
        _choice("model.name", m.name, MODELS)
        _choice("data.source", da.source, SOURCES)
        _choice("data.mode", da.mode, DATA_MODES)
        if da.image_size is not None:
            _int_range("data.image_size", da.image_size, 8, 1024)
        if da.max_test_examples is not None:
            _int_range("data.max_test_examples", da.max_test_examples, 1, 10 ** 9)
        _int_range("partition.num_clients", p.num_clients, 1, MAX_CLIENTS)
        _choice("partition.distribution", p.distribution, DISTRIBUTIONS)
        _float_range("partition.beta", p.beta, 0.0, 1.0)
        _float_range("partition.share", p.share, 0.0, 1.0)
        if not (_is_number(p.alpha) and p.alpha > 0):
            raise UserError(f"partition.alpha={show(p.alpha)} is invalid: a number > 0 is required")
        _int_range("partition.shards_per_client", p.shards_per_client, 1, 100_000)
        _float_range("partition.sigma", p.sigma, 0.0, 10.0)
        _choice("partition.forming", p.forming, FORMING)
        _float_range("partition.keep", p.keep, 0.0, 1.0)
        _int_range("training.rounds", t.rounds, 1, MAX_ROUNDS)
        if t.clients_per_round is not None:
            _int_range("training.clients_per_round", t.clients_per_round, 1, p.num_clients)
        _int_range("training.local_epochs", t.local_epochs, 1, MAX_LOCAL_EPOCHS)
        _choice("training.optimizer", t.optimizer, OPTIMIZERS)
        _positive("training.lr", t.lr)
        _float_range("training.momentum", t.momentum, 0.0, 1.0)
        _float_range("training.weight_decay", t.weight_decay, 0.0, None)
        _int_range("training.batch_size", t.batch_size, 1, MAX_BATCH)
        _int_range("training.test_batch_size", t.test_batch_size, 1, MAX_BATCH)
        _float_range("training.prox_mu", t.prox_mu, 0.0, None)
        _bool("training.augment", t.augment)
        _int_range("training.eval_every", t.eval_every, 1, MAX_ROUNDS)
        _choice("server.aggregator", s.aggregator, AGGREGATORS)
        _float_range("server.trim_fraction", s.trim_fraction, 0.0, 0.49)
        _positive("server.clip_norm", s.clip_norm)
        _choice("server.optimizer", s.optimizer, SERVER_OPTIMIZERS)
        _positive("server.lr", s.lr)
        _float_range("server.momentum", s.momentum, 0.0, 1.0)
        _choice("server.bn_mode", s.bn_mode, BN_MODES)
        _choice("server.mode", s.mode, ("sync", "async"))
        if s.concurrency is not None:
            _int_range("server.concurrency", s.concurrency, 1, MAX_CLIENTS)
        if s.buffer_size is not None:
            _int_range("server.buffer_size", s.buffer_size, 1, MAX_CLIENTS)
        from fedjax_grid.federated.staleness import STALENESS
        STALENESS.validate(s.staleness, "server.staleness")
        _int_range("server.max_staleness", s.max_staleness, 0, MAX_ROUNDS)
        _int_range("server.bn_calibration_examples", s.bn_calibration_examples, 1, 10_000_000)
        if s.max_norm_ratio is not None:
            _float_range("server.max_norm_ratio", s.max_norm_ratio, 1.0, None)
        if g.scheduler is not None:
            _scheduler_address(g.scheduler, g.tls_dir)
        _int_range("grid.workers", g.workers, 1, 256)
        _int_range("grid.threads_per_worker", g.threads_per_worker, 1, 256)
        if g.deadline_s is not None:
            _positive("grid.deadline_s", g.deadline_s)
            _float_range("grid.deadline_s", g.deadline_s, 0.0, MAX_SECONDS)
        _float_range("grid.quorum", g.quorum, 0.0, 1.0)
        _int_range("grid.overcommit", g.overcommit, 0, MAX_CLIENTS)
        _int_range("grid.retries", g.retries, 0, 100)
        _positive("grid.connect_timeout_s", g.connect_timeout_s)
        _float_range("grid.connect_timeout_s", g.connect_timeout_s, 0.0, MAX_SECONDS)
        _int_range("grid.quarantine_after", g.quarantine_after, 0, 1000)
        _float_range("grid.wait_for_workers_s", g.wait_for_workers_s, 0.0, MAX_SECONDS)
        _bool("faults.enabled", f.enabled)
        _float_range("faults.max_slowdown", f.max_slowdown, 1.0, 1000.0)
        for name in ("offline_prob", "dropout_prob", "error_prob", "hang_prob"):
            _float_range(f"faults.{name}", getattr(f, name), 0.0, 1.0)
        _float_range("faults.max_delay_s", f.max_delay_s, 0.0, MAX_SECONDS)
        _float_range("faults.hang_s", f.hang_s, 0.0, MAX_SECONDS)
        _float_range("faults.attack_fraction", f.attack_fraction, 0.0, 1.0)
        _choice("faults.attack", f.attack, ATTACKS)
        _float_range("faults.attack_scale", f.attack_scale, 0.0, 1e6)
        _int_range("seed", self.seed, 0, MAX_SEED)
        return self

    @property
    def clients_per_round(self) -> int:
        return self.training.clients_per_round or self.partition.num_clients


#: A bare key (``lr``) resolves to the first section holding it, in this order.
BARE_KEY_ORDER = ("training", "partition", "data", "model", "grid", "faults", "server")


def _section_classes() -> dict[str, type]:
    hints = get_type_hints(ExperimentConfig)
    return {k: v for k, v in hints.items() if dataclasses.is_dataclass(v)}


def _resolve_key(key: str) -> list[str]:
    """'training.lr' -> ['training', 'lr']; 'lr' -> the unique section holding it."""
    sections = _section_classes()
    parts = key.split(".")
    top = {f.name for f in dataclasses.fields(ExperimentConfig)}
    if len(parts) == 1:
        if parts[0] in top and parts[0] not in sections:
            return parts
        owners = [s for s in BARE_KEY_ORDER
                  if parts[0] in {f.name for f in dataclasses.fields(sections[s])}]
        if owners:
            return [owners[0], parts[0]]
        raise UserError(f"unknown config key {show(key)}: use section.field, sections are "
                        + ", ".join(sections))
    if len(parts) == 2 and parts[0] in sections:
        fields = {f.name for f in dataclasses.fields(sections[parts[0]])}
        if parts[1] in fields:
            return parts
        raise UserError(f"unknown config key {show(key)}: {parts[0]} has " + ", ".join(sorted(fields)))
    if len(parts) == 3 and parts[0] in ("model", "data") and parts[1] in ("kwargs", "options"):
        return parts
    raise UserError(f"unknown config key {show(key)}: use section.field, sections are "
                    + ", ".join(sections))


def _build(cls, d: dict, prefix: str):
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        bad = sorted(unknown)[0]
        raise UserError(f"unknown config key {show(prefix + bad)}: allowed are " + ", ".join(fields))
    kwargs = {}
    for name, value in d.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, dict):
                raise UserError(f"config section {show(prefix + name)} must be a mapping, got {show(value)}")
            kwargs[name] = _build(typ, value, prefix + name + ".")
        else:
            kwargs[name] = _coerce(prefix + name, value, typ)
    return cls(**kwargs)


def _coerce(key: str, value: Any, typ) -> Any:
    """Check/convert a scalar against its annotated type (one-line error when impossible)."""
    optional = getattr(typ, "__args__", None) and type(None) in typ.__args__
    base = typ
    if optional:
        if value is None:
            return None
        base = [a for a in typ.__args__ if a is not type(None)][0]
    if base is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{key}={show(value)} is invalid: true or false is required")
    if base is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            raise UserError(f"{key}={show(value)} is invalid: an integer is required")
        return int(value)
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{key}={show(value)} is invalid: a number is required")
        try:
            return float(value)
        except OverflowError:
            raise UserError(f"{key}={show(value)} is invalid: a finite number is required") from None
    if base is str:
        if not isinstance(value, str):
            raise UserError(f"{key}={show(value)} is invalid: a string is required")
        return value
    if base is dict:
        if not isinstance(value, dict):
            raise UserError(f"{key}={show(value)} is invalid: a mapping is required")
        return dict(value)
    return value


_ADDRESS = re.compile(r"^(?:(tcp|tls|ucx|inproc)://)?([A-Za-z0-9._\-]+|\[[0-9A-Fa-f:]+\]):(\d{1,5})$")


def _scheduler_address(address, tls_dir) -> None:
    """A scheduler address like tcp://HOST:8786; tls:// needs ``grid.tls_dir``."""
    m = _ADDRESS.match(address) if isinstance(address, str) else None
    if m is None or not 0 < int(m.group(3)) < 65536:
        raise UserError(f"grid.scheduler={show(address)} is invalid: an address like "
                        "tcp://HOST:8786 or tls://HOST:8786 is required")
    if m.group(1) == "tls" and tls_dir is None:
        raise UserError(f"grid.scheduler={show(address)} uses TLS but no certificates are set; "
                        "allowed: set grid.tls_dir to a `fedjax-grid certs` folder, or a tcp:// address")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _choice(key, value, allowed):
    if value not in allowed:
        raise UserError(f"{key}={show(value)} is invalid: allowed are " + ", ".join(allowed))


def _int_range(key, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (
            hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise UserError(f"{key}={show(value)} is invalid: an integer {rng} is required")


def _float_range(key, value, lo, hi):
    if not _is_number(value) or value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise UserError(f"{key}={show(value)} is invalid: a number {rng} is required")


def _positive(key, value):
    if not _is_number(value) or value <= 0:
        raise UserError(f"{key}={show(value)} is invalid: a number > 0 is required")


def _bool(key, value):
    if not isinstance(value, bool):
        raise UserError(f"{key}={show(value)} is invalid: true or false is required")
