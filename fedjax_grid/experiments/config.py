"""The experiment configuration: one typed, validated, serialisable object.

``ExperimentConfig`` is what the CLI (``--preset``/``--config``/``--set``), the
notebooks and the widgets all build. It is a pydantic model: sections are models
with ``extra='forbid'``, bounds are field constraints and every field has a
description (the widgets and the CLI help read them from the JSON schema,
``ExperimentConfig.model_json_schema()``). It round-trips through JSON and YAML
(``to_dict``/``from_dict``, ``save``/``load``); every bad value becomes a one-line
:class:`~fedjax_grid.errors.UserError` naming the value and what is allowed, with
``path`` = the dotted key of the value (``partition.distribution.share``).

Sections:

- ``model``     which network (``fedjax_grid.models.MODELS``) and its ``kwargs``
- ``data``      source (``SOURCES``) and its ``options``, archive/path, data dir, mode
- ``partition`` C, the distribution type and the forming strategy
- ``training``  rounds, local epochs, optimiser, lr, batch sizes
- ``server``    aggregator, server optimiser, BatchNorm handling, norm guard,
                upload and broadcast codecs (``codec``, ``broadcast_codec``: ``CODECS``)
- ``grid``      cluster, deadline, quorum, retries, compilation cache
- ``faults``    heterogeneity and fault simulation (off by default); ``link``: the
                desktops' simulated network (``LINKS``), applied whenever not ``none``
- ``tracking``  per-round scalars to TensorBoard / MLflow (off by default)

A choice of a registered component is a mapping holding its name and its own
parameters, completed with that component's defaults::

    partition:
      distribution: {name: stratified, share: 0.9, classes_per_client: null}
      forming: {name: hybrid, keep: 0.5}
    server:
      aggregator: {name: trimmed_mean, trim_fraction: 0.1}
      optimizer: {name: fedadam, lr: 0.01, b1: 0.9, b2: 0.99, eps: 0.001}
    faults:
      attack: {name: scale, scale: 10.0}

Its value may also be written as a name or the shorthand ``'stratified(0.9)'`` /
``'fedadam(lr=0.03)'``; a choice given by name gets that component's defaults.
``model.kwargs`` and ``data.options`` keep only the keys given (checked against
the model's / source's registered parameters).

``--set`` keys (``with_overrides``): ``section.key``, ``section.choice.param``
(``partition.distribution.share=0.9``), ``section.choice=name(v)``,
``model.kwargs.width=0.5``; a bare key (``rounds=3``, ``share=0.9``) names the
unique field or component parameter holding it and is refused, naming the
candidates, when several do (``lr``: ``training.lr`` and ``server.optimizer.lr``).

Bounds: every count, size and duration has one a run can satisfy, checked before
anything starts: field bounds (``MAX_*``, ``MIN_SECONDS``) and, across sections
(``_counts_across_sections``), clients per round <= C, in async mode the tasks in flight
<= C and the buffer <= the tasks in flight, overcommitted spares <= C - clients per round;
what needs the data (the local batch <= the largest local set: ``build.check_batch_size``)
or the machine (LocalCluster workers that fit its memory: ``grid.cluster``) is checked
when the data is loaded / before the grid starts. ``name`` is one folder name and paths
hold no control characters (``names.check_name`` / ``check_path``).

Norm settings: ``server.aggregator.max_norm`` (clipped_mean) bounds each client's
update (clipping); ``server.max_norm_ratio`` rejects an update whose norm exceeds
that multiple of the median accepted norm (a ratio, not a norm). The clients'
gradient clipping (``training.HParams.grad_clip``) is not a config setting.

Files written by earlier versions (flat keys such as ``partition.beta``,
``server.trim_fraction``, ``server.lr``, ``faults.attack_scale``) still load:
:func:`migrate` moves each flat key into the mapping of the component it belongs
to (dropped when the chosen component has no such parameter, which the earlier
version ignored as well). Their ``fingerprint()`` is computed over the new shape
and so differs from the one stored in those runs' checkpoints: such a run cannot
be resumed by this version (``--resume`` says so in one line and how to proceed).
"""
from __future__ import annotations

import hashlib
import json
import pathlib
import re
import typing
from collections.abc import Mapping
from typing import Any, Literal, Optional

import pydantic
import yaml
from pydantic import Field

from fedjax_grid.data.registry import SOURCES
from fedjax_grid.errors import UserError, show, show_path
from fedjax_grid.experiments.safe_yaml import MAX_BYTES as MAX_CONFIG_BYTES
from fedjax_grid.experiments.safe_yaml import load_bounded
from fedjax_grid.compression import CODECS
from fedjax_grid.federated.aggregators import AGGREGATORS
from fedjax_grid.federated.client_algorithms import CLIENT_ALGORITHMS
from fedjax_grid.federated.round_policies import ROUND_POLICIES
from fedjax_grid.federated.server import BN_MODES, SERVER_OPTIMIZERS
from fedjax_grid.federated.staleness import STALENESS
from fedjax_grid.hazards.faults import ATTACKS
from fedjax_grid.hazards.links import LINKS
from fedjax_grid.models import MODELS
from fedjax_grid.partition import DISTRIBUTIONS, FORMING
from fedjax_grid.registry import Choice, Registry, located_error
from fedjax_grid.training.hparams import OPTIMIZERS

#: Upper bounds of counts that have no sane meaning beyond them (stated in the errors).
MAX_ROUNDS = 100_000
MAX_LOCAL_EPOCHS = 10_000
MAX_CLIENTS = 1_000_000
MAX_BATCH = 1_000_000
MAX_SEED = 2 ** 32 - 1
#: Longest time setting (seconds): one week.
MAX_SECONDS = 7 * 24 * 3600.0
#: Shortest deadline or connection timeout (seconds): time for one message to go and come
#: back on a loaded machine; below it every task would be late, every connection refused.
MIN_SECONDS = 1.0

DATA_MODES = ("shipped", "resident")

#: Config choices backed by a registry: dotted key -> registry. ``model.name`` and
#: ``data.source`` keep their parameters in ``model.kwargs`` / ``data.options``.
REGISTRIES: dict[str, Registry] = {
    "model.name": MODELS,
    "data.source": SOURCES,
    "partition.distribution": DISTRIBUTIONS,
    "partition.forming": FORMING,
    "training.algorithm": CLIENT_ALGORITHMS,
    "server.aggregator": AGGREGATORS,
    "server.optimizer": SERVER_OPTIMIZERS,
    "server.staleness": STALENESS,
    "server.codec": CODECS,
    "server.broadcast_codec": CODECS,
    "faults.attack": ATTACKS,
    "faults.link": LINKS,
}
#: Where the parameters of a registry choice live (the choice itself, or a mapping beside it).
PARAMS_AT = {"model.name": "model.kwargs", "data.source": "data.options"}


# ------------------------------------------------------------------------- choices

class RegistryChoice:
    """Annotation marker of a config field holding a :class:`Choice` of ``registry``:
    input (name, ``'name(v)'``, mapping or Choice) is validated by the registry with
    the field's dotted path; the JSON schema lists the components and their parameters."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def __get_pydantic_core_schema__(self, source, handler):
        from pydantic_core import core_schema
        registry = self.registry

        def validate(value, info):
            return registry.choice(value, f"{info.config['title']}.{info.field_name}")

        return core_schema.with_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(
                lambda c: c.model_dump()))

    def __get_pydantic_json_schema__(self, core_schema, handler):
        variants = []
        for entry in self.registry.entries():
            params = entry.params.model_json_schema()
            props = {"name": {"const": entry.name, "description": entry.doc}}
            props.update(params.get("properties", {}))
            variants.append({"title": entry.name, "type": "object", "properties": props,
                             "required": ["name"], "additionalProperties": False})
        return {"oneOf": variants, "x-registry": self.registry.kind}


def _choice(registry: Registry, default: str, description: str):
    return Field(default_factory=lambda: registry.choice(default), description=description)


def _names_schema(registry: Registry):
    return lambda schema: schema.update(enum=list(registry))


def _paths(*fields: str):
    """A validator of the path fields ``fields``: no control characters (a NUL byte cannot
    name a file), not empty (``names.check_path``)."""
    def check(cls, value, info):
        if value is not None:
            from fedjax_grid.names import check_path
            check_path(value, ".".join(p for p in (cls._prefix(), info.field_name) if p))
        return value
    return pydantic.field_validator(*fields)(classmethod(check))


# ------------------------------------------------------------------------- sections

class Section(pydantic.BaseModel):
    """Base of the config sections: unknown keys refused, no silent conversions,
    finite numbers, assignments validated; errors are located UserErrors."""
    model_config = pydantic.ConfigDict(extra="forbid", strict=True, validate_assignment=True,
                                       allow_inf_nan=False, title="experiment")

    def __init__(self, **data):
        try:
            super().__init__(**data)
        except pydantic.ValidationError as e:
            raise located_error(e, self._prefix(), type(self)) from None

    def __setattr__(self, name, value):
        try:
            super().__setattr__(name, value)
        except pydantic.ValidationError as e:
            raise located_error(e, self._prefix(), type(self)) from None

    @classmethod
    def _prefix(cls) -> str:
        title = cls.model_config.get("title")
        return "" if title == "experiment" else title


def _params_of(registry: Registry, name: str, given: Any, path: str) -> dict:
    """``given`` (a mapping) checked against ``name``'s parameters; only given keys kept."""
    if not isinstance(given, Mapping):
        raise UserError(f"{path}={show(given)} is invalid: a mapping like {{width: 0.25}} is "
                        "required", path=path)
    return {k: v for k, v in registry.validate({**given, "name": name}, path, fill=False).items()
            if k != "name"}


def _check_named(section: Section, registry: Registry, name_key: str, params_key: str) -> Section:
    """A section naming a registered component (``model.name``) with its parameters in a
    mapping beside it (``model.kwargs``): the name must be registered, the mapping's keys
    must be its parameters (values checked and kept as given)."""
    prefix, name = section._prefix(), getattr(section, name_key)
    registry.get(name, f"{prefix}.{name_key}")
    checked = _params_of(registry, name, getattr(section, params_key), f"{prefix}.{params_key}")
    object.__setattr__(section, params_key, checked)
    return section


class NamedSection(Section):
    """A section naming a registered component (``_named``: registry, name field, params
    field), checked by ``_check_named`` after validation."""
    _named: typing.ClassVar[tuple] = ()

    @pydantic.model_validator(mode="after")
    def _check(self):
        return _check_named(self, *self._named)


class ModelConfig(NamedSection):
    model_config = pydantic.ConfigDict(title="model")
    _named: typing.ClassVar[tuple] = (MODELS, "name", "kwargs")
    name: str = Field("vgg11", description="the network (a registered model)",
                      json_schema_extra=_names_schema(MODELS))
    kwargs: dict[str, Any] = Field(default_factory=dict, description=(
        "constructor parameters of the model (e.g. width, norm, head); only those given are kept"))


class DataConfig(NamedSection):
    model_config = pydantic.ConfigDict(title="data")
    _named: typing.ClassVar[tuple] = (SOURCES, "source", "options")
    source: str = Field("digits", description="the data set (a registered source)",
                        json_schema_extra=_names_schema(SOURCES))
    path: Optional[str] = Field(None, description="archive or folder of the source (null: the "
                                                  "default place / bundled data)")
    data_dir: Optional[str] = Field(None, description="where prepared (array_record) copies live "
                                                      "(null: the default data dir)")
    image_size: Optional[int] = Field(32, ge=8, le=1024, description=(
        "side in pixels images are resized to (digits, textures, fragments; null: native)"))
    mode: Literal[DATA_MODES] = Field("shipped", description=(
        "shipped: the coordinator sends each client's examples with its task; "
        "resident: each worker opens the prepared data set and receives indices"))
    max_test_examples: Optional[int] = Field(None, ge=1, le=10 ** 9, description=(
        "evaluate the global model on at most this many test examples (null: all)"))
    options: dict[str, Any] = Field(default_factory=dict, description=(
        "options of the source loader (e.g. fragment size, storage); only those given are kept"))

    _check_paths = _paths("path", "data_dir")


class PartitionConfig(Section):
    model_config = pydantic.ConfigDict(title="partition")
    num_clients: int = Field(4, ge=1, le=MAX_CLIENTS, description="C: clients (local sets)")
    distribution: typing.Annotated[Choice, RegistryChoice(DISTRIBUTIONS)] = _choice(
        DISTRIBUTIONS, "iid", "how the training set is cut into local sets, with its parameters")
    forming: typing.Annotated[Choice, RegistryChoice(FORMING)] = _choice(
        FORMING, "static", "how the local sets change over the rounds, with its parameters")


class TrainingConfig(Section):
    model_config = pydantic.ConfigDict(title="training")
    rounds: int = Field(10, ge=1, le=MAX_ROUNDS, description="federated rounds of the run")
    clients_per_round: Optional[int] = Field(None, ge=1, le=MAX_CLIENTS, description=(
        "clients sampled per round (null: all C clients)"))
    local_epochs: int = Field(1, ge=1, le=MAX_LOCAL_EPOCHS, description="local epochs per round")
    optimizer: Literal[tuple(OPTIMIZERS)] = Field("momentum", description="the clients' optimiser")
    lr: float = Field(0.05, gt=0.0, description="the clients' learning rate")
    momentum: float = Field(0.9, ge=0.0, le=1.0, description="momentum of the 'momentum' optimiser")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 weight decay of the clients' optimiser")
    batch_size: int = Field(32, ge=1, le=MAX_BATCH, description="local mini-batch size")
    test_batch_size: int = Field(256, ge=1, le=MAX_BATCH, description="evaluation batch size")
    prox_mu: float = Field(0.0, ge=0.0, description="FedProx proximal coefficient mu (0: FedAvg)")
    algorithm: typing.Annotated[Choice, RegistryChoice(CLIENT_ALGORITHMS)] = _choice(
        CLIENT_ALGORITHMS, "fedavg", "the client algorithm: fedavg (plain local training), "
                                     "scaffold (control variates), fednova (normalized averaging)")
    augment: bool = Field(False, description="random crops and flips in local training")
    precision: Literal["f32", "bf16"] = Field("f32", description=(
        "compute precision of local training: bf16 rounds the operands of the model's "
        "matmuls to bfloat16 (float32 accumulation; faster only on CPUs with AVX512-BF16 "
        "or AMX and on accelerators: elsewhere XLA emulates it, slower than f32, and the run "
        "warns at start); weights, optimizer state, updates, aggregation, loss "
        "and BatchNorm statistics stay float32; evaluation is float32"))
    eval_every: int = Field(1, ge=1, le=MAX_ROUNDS, description=(
        "evaluate the global model every this many rounds (and after the last)"))


class ServerConfig(Section):
    model_config = pydantic.ConfigDict(title="server")
    aggregator: typing.Annotated[Choice, RegistryChoice(AGGREGATORS)] = _choice(
        AGGREGATORS, "mean", "how the accepted client updates are combined, with its parameters")
    optimizer: typing.Annotated[Choice, RegistryChoice(SERVER_OPTIMIZERS)] = _choice(
        SERVER_OPTIMIZERS, "fedavg", "the server optimiser applied to the combined update, "
                                     "with its own lr and parameters")
    bn_mode: Literal[BN_MODES] = Field("recalibrate", description=(
        "global BatchNorm statistics: recalibrate (re-estimated exactly by the coordinator after "
        "each server step), pooled (the clients' exact moments, pooled), local (kept by each "
        "client, FedBN) or aggregate (mean of the clients' running averages: biased)"))
    bn_calibration_examples: int = Field(2048, ge=1, le=10_000_000, description=(
        "training examples the coordinator re-estimates BatchNorm statistics on"))
    max_norm_ratio: Optional[float] = Field(None, ge=1.0, description=(
        "reject updates whose norm exceeds this multiple of the median accepted norm (null: off)"))
    mode: str = Field("sync", json_schema_extra=_names_schema(ROUND_POLICIES), description=(
        "the round policy: sync: rounds with a barrier (FedAvg/FedOpt/FedProx); async: "
        "buffered asynchronous aggregation (FedBuff), no barrier, one server update per buffer"))
    concurrency: Optional[int] = Field(None, ge=1, le=MAX_CLIENTS, description=(
        "async: client tasks kept in flight, one per client at most (null: "
        "training.clients_per_round)"))
    buffer_size: Optional[int] = Field(None, ge=1, le=MAX_CLIENTS, description=(
        "async: deltas per server update, at most concurrency (null: max(1, concurrency // 2))"))
    staleness: typing.Annotated[Choice, RegistryChoice(STALENESS)] = _choice(
        STALENESS, "polynomial", "async: weighting of a delta by its staleness, with its parameters")
    max_staleness: int = Field(10, ge=0, le=MAX_ROUNDS, description=(
        "async: deltas staler than this many server updates are dropped (recorded)"))
    max_lag: Optional[int] = Field(None, ge=1, le=MAX_ROUNDS, description=(
        "async fairness: a client that has folded this many updates more than the least "
        "folded client gets no new task while a task is in flight that could close the gap "
        "(null: no bound; slow desktops' clients may then contribute nothing)"))
    codec: typing.Annotated[Choice, RegistryChoice(CODECS)] = _choice(
        CODECS, "none", "how clients encode their update for the upload (topk keeps an "
                        "error-feedback residual per client on the coordinator)")
    broadcast_codec: typing.Annotated[Choice, RegistryChoice(CODECS)] = _choice(
        CODECS, "none", "how the broadcast is encoded (server.broadcast=full: the model; delta: "
                        "each step of the chain); clients train from the decoded weights")
    broadcast: Literal["full", "delta"] = Field("full", description=(
        "full: the global model each round; delta: only the change since the version a "
        "desktop holds (a chain of encoded steps from one shared reference, closed loop)"))

    @pydantic.field_validator("mode")
    @classmethod
    def _check_mode(cls, value: str) -> str:
        return ROUND_POLICIES.get(value, "server.mode").name

    @pydantic.model_validator(mode="after")
    def _check_broadcast_codec(self):
        if self.broadcast_codec.name == "topk" and self.broadcast == "full":
            raise UserError("server.broadcast_codec='topk' is invalid with server.broadcast=full: "
                            "top-k would zero out most of the model; allowed: none, bf16, int8, "
                            "quant, or server.broadcast=delta", path="server.broadcast_codec")
        return self


_ADDRESS = re.compile(r"^(?:(tcp|tls|ucx|inproc)://)?([A-Za-z0-9._\-]+|\[[0-9A-Fa-f:]+\]):(\d{1,5})$")


class GridConfig(Section):
    model_config = pydantic.ConfigDict(title="grid")
    scheduler: Optional[str] = Field(None, description=(
        "address of a running Dask scheduler (tcp://HOST:8786; null: an embedded LocalCluster)"))
    workers: int = Field(2, ge=1, le=256, description="LocalCluster worker processes")
    threads_per_worker: int = Field(1, ge=1, le=256, description="threads per LocalCluster worker")
    host: str = Field("127.0.0.1", description="interface the LocalCluster listens on")
    dashboard_address: Optional[str] = Field("127.0.0.1:0", description=(
        "Dask dashboard (null: off; Dask's health and metrics routes then take a random port)"))
    local_directory: Optional[str] = Field(None, description="Dask workers' scratch folder")
    deadline_s: Optional[typing.Union[typing.Annotated[float, Field(ge=MIN_SECONDS, le=MAX_SECONDS)],
                                      Literal["auto"]]] = Field(None, description=(
        "seconds a round waits for client updates (async: a task may run; null: no deadline; "
        "'auto': from the desktops' observed turnaround, see fedjax_grid.runner.tuning)"))
    quorum: typing.Union[typing.Annotated[float, Field(ge=0.0, le=1.0)], Literal["auto"]] = Field(
        0.5, description=("minimum fraction of the sampled clients that must report for the "
                          "round to count ('auto': half the desktops' observed reliability)"))
    overcommit: typing.Union[typing.Annotated[int, Field(ge=0, le=MAX_CLIENTS)],
                             Literal["auto"]] = Field(0, description=(
        "extra clients sampled per round; the first to finish are kept (at most "
        "num_clients - clients_per_round; 'auto': from the desktops' reliability and "
        "stragglers)"))
    pin_workers: bool = Field(True, description=(
        "LocalCluster: pin each worker process to its own share of this machine's cores "
        "(XLA sizes its thread pool to them); false: every worker may use every core"))
    xla_threads: Optional[int] = Field(1, ge=1, le=256, description=(
        "XLA:CPU threads a worker process computes a task with (its intra-op pool, set as "
        "PJRT_NPROC before JAX starts there). Results depend on it: reductions and matmuls "
        "split over threads add in another order. One value for every worker makes a run's "
        "numbers independent of the executor (LocalCluster or dask worker) and of the desktop "
        "a client ran on (same CPU kind); null: each worker's own cores (faster for a lone task "
        "on a many-core desktop, numbers then depend on the desktop)"))
    coordinator_xla_threads: Optional[int] = Field(1, ge=1, le=256, description=(
        "XLA:CPU threads the coordinator re-estimates BatchNorm and evaluates with (set "
        "before JAX starts in its process: the CLI, or a notebook before its first JAX call; "
        "later it stays as JAX started). 1: its numbers do not depend on the coordinator's "
        "cores, and an embedded LocalCluster's workers keep the cores (measured: 0.1-0.2 "
        "CPU-seconds less per quickstart round); with a number its computations also run "
        "inline, without JAX's asynchronous dispatch; null: all its cores and JAX's own "
        "dispatch (a coordinator that does nothing else)"))
    worker_nice: int = Field(5, ge=0, le=19, description=(
        "added to an embedded LocalCluster's worker processes' niceness: the coordinator, "
        "whose dispatch, server step and evaluation every round waits for, is not starved "
        "by its own workers on a shared machine (results unchanged); 0: equal priority; "
        "external workers are left as they are"))
    dask_profiler: bool = Field(False, description=(
        "Dask's statistical profiler on an embedded LocalCluster's workers (the dashboard's "
        "Profile page; it samples every thread every 10 ms: about 0.14 CPU-seconds per "
        "20-client quickstart round); external workers keep their own Dask settings"))
    overlap_rounds: bool = Field(True, description=(
        "sync: launch the next round's tasks right after the server step, while the "
        "coordinator re-estimates BatchNorm, evaluates and checkpoints (same results)"))
    retries: int = Field(2, ge=0, le=100, description=(
        "re-submissions of a client task that failed or was lost with its worker"))
    compile_cache_dir: Optional[str] = Field(None, description=(
        "JAX persistent compilation cache (null: $FEDJAX_GRID_COMPILE_CACHE or ~/.cache/fedjax_grid/jax)"))
    tls_dir: Optional[str] = Field(None, description=(
        "Dask TLS certificates made by `fedjax-grid certs` (null: plain TCP)"))
    allow_insecure: bool = Field(False, description=(
        "connect to (or start) a plain-TCP scheduler on a non-loopback address: whoever "
        "reaches it can run code on every attached desktop (default: refused; use TLS)"))
    connect_timeout_s: float = Field(30.0, ge=MIN_SECONDS, le=MAX_SECONDS, description=(
        "seconds to wait for the scheduler / workers to appear (a new run waits this long "
        "for the scheduler's port before it loads data and compiles)"))
    quarantine_after: int = Field(3, ge=0, le=1000, description=(
        "consecutive failed tasks after which a worker is quarantined for the run (0: never)"))
    wait_for_workers_s: float = Field(60.0, ge=0.0, le=MAX_SECONDS, description=(
        "seconds to wait for a healthy worker when none is connected before stopping "
        "with a resumable checkpoint"))
    max_rounds_without_update: int = Field(3, ge=0, le=MAX_ROUNDS, description=(
        "stop the run with a one-line error naming the cause (exit 3) after this many "
        "rounds in a row applied no update (async: this many x concurrency task outcomes "
        "in a row brought none); 0: never"))

    _check_paths = _paths("local_directory", "compile_cache_dir", "tls_dir")

    @pydantic.model_validator(mode="after")
    def _check_scheduler(self):
        address = self.scheduler
        if address is None:
            return self
        m = _ADDRESS.match(address)
        if m is None or not 0 < int(m.group(3)) < 65536:
            raise UserError(f"grid.scheduler={show(address)} is invalid: an address like "
                            "tcp://HOST:8786 or tls://HOST:8786 is required", path="grid.scheduler")
        if m.group(1) == "tls" and self.tls_dir is None:
            raise UserError(f"grid.scheduler={show(address)} uses TLS but no certificates are set; "
                            "allowed: set grid.tls_dir to a `fedjax-grid certs` folder, or a "
                            "tcp:// address", path="grid.tls_dir")
        return self

    @pydantic.field_validator("dashboard_address")
    @classmethod
    def _check_dashboard(cls, value):
        m = None if value is None else re.match(r"^([A-Za-z0-9.\-]*|\[[0-9A-Fa-f:]+\]):(\d{1,5})$", value)
        if value is not None and (m is None or int(m.group(2)) > 65535):
            raise UserError(f"grid.dashboard_address={show(value)} is invalid: HOST:PORT (port "
                            "0-65535; 0: any free one), :PORT, or null (off) is required",
                            path="grid.dashboard_address")
        return value

    @pydantic.model_validator(mode="after")
    def _check_host(self):
        from fedjax_grid.names import check_host
        try:
            check_host(self.host)
        except UserError:
            raise UserError(f"grid.host={show(self.host)} is invalid: an IP address or host name "
                            "is required (127.0.0.1: this machine only)", path="grid.host") from None
        return self


class FaultConfig(Section):
    """Heterogeneity and fault simulation, applied inside real tasks on real workers."""
    model_config = pydantic.ConfigDict(title="faults")
    enabled: bool = Field(False, description="simulate the faults below")
    max_slowdown: float = Field(1.0, ge=1.0, le=1000.0, description=(
        "per-client slow-down factors are drawn log-uniformly from [1, max_slowdown]"))
    slow_by: Literal["client", "worker"] = Field("client", description=(
        "whose the slow-down is: 'client' -- a client is slow wherever its task runs (its data "
        "lives on one slow desktop); 'worker' -- a worker is slow for every task it runs (a "
        "grid where any desktop trains any client: shipped data); drawn per worker name"))
    offline_prob: float = Field(0.0, ge=0.0, le=1.0, description=(
        "probability that a client is offline in a round"))
    max_delay_s: float = Field(0.0, ge=0.0, le=MAX_SECONDS, description=(
        "random extra delay per task, uniform in [0, max_delay_s] seconds"))
    dropout_prob: float = Field(0.0, ge=0.0, le=1.0, description=(
        "probability that a task drops out (raises) after training"))
    error_prob: float = Field(0.0, ge=0.0, le=1.0, description=(
        "probability that a task returns a corrupted (NaN) update"))
    hang_prob: float = Field(0.0, ge=0.0, le=1.0, description=(
        "probability that a task hangs hang_s seconds before returning"))
    hang_s: float = Field(60.0, ge=0.0, le=MAX_SECONDS, description="length of a simulated hang")
    attack_fraction: float = Field(0.0, ge=0.0, le=1.0, description=(
        "fraction of the C clients that are hostile for the whole run (chosen by seed)"))
    attack: typing.Annotated[Choice, RegistryChoice(ATTACKS)] = _choice(
        ATTACKS, "scale", "what a hostile client sends, with its parameters")
    link: typing.Annotated[Choice, RegistryChoice(LINKS)] = _choice(
        LINKS, "none", "simulated network link of each desktop (seeded per client): its "
                       "transfer time is slept in each task; applies even when enabled is false")


class TrackingConfig(Section):
    """Where the per-round scalars go besides the run's records (``fedjax_grid.tracking``)."""
    model_config = pydantic.ConfigDict(title="tracking")
    tensorboard: bool = Field(False, description=(
        "write each round's scalars as TensorBoard event files in <run folder>/tensorboard "
        "(needs tensorboardX)"))
    mlflow: bool = Field(False, description=(
        "log the config and each round's scalars to MLflow (needs mlflow)"))
    mlflow_uri: Optional[str] = Field(None, description=(
        "MLflow tracking URI: a server (http://host:5000) or database (null: MLflow's own "
        "default, $MLFLOW_TRACKING_URI)"))


#: Section name -> model.
SECTIONS: dict[str, type[Section]] = {
    "model": ModelConfig, "data": DataConfig, "partition": PartitionConfig,
    "training": TrainingConfig, "server": ServerConfig, "grid": GridConfig, "faults": FaultConfig,
    "tracking": TrackingConfig,
}


class ExperimentConfig(Section):
    """The whole experiment (see the module docstring)."""
    model_config = pydantic.ConfigDict(title="experiment")
    name: str = Field("experiment", description=(
        "name of the experiment: one folder name (runs/<name>/...; no '/', '..' or control "
        "characters)"))
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of everything random in the run")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the network")
    data: DataConfig = Field(default_factory=DataConfig, description="the data set")
    partition: PartitionConfig = Field(default_factory=PartitionConfig, description="the clients' local sets")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="local training")
    server: ServerConfig = Field(default_factory=ServerConfig, description="aggregation and server step")
    grid: GridConfig = Field(default_factory=GridConfig, description="the Dask grid")
    faults: FaultConfig = Field(default_factory=FaultConfig, description="fault simulation")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description=(
        "export of the per-round scalars (TensorBoard, MLflow)"))
    out_dir: Optional[str] = Field(None, description="where records, checkpoints and plots go "
                                                     "(null: runs/<name>/<time>)")

    _check_paths = _paths("out_dir")

    @pydantic.field_validator("name")
    @classmethod
    def _check_name(cls, value):
        from fedjax_grid.names import check_name
        return check_name(value)

    #: Flat keys of earlier versions that :func:`migrate` moved (empty for current files).
    _legacy_keys: tuple = pydantic.PrivateAttr(default=())

    @pydantic.model_validator(mode="after")
    def _check_across_sections(self):
        """Counts a run can satisfy: what depends on another section's value."""
        for key, value, least, most, why in _counts_across_sections(self):
            if value is not None and value != "auto" and value > most:
                raise UserError(f"{key}={show(value)} is invalid: an integer in [{least}, {most}] "
                                f"is required ({why})", path=key)
        return self

    def __eq__(self, other) -> bool:  # the values, not how they were read (legacy_keys)
        return isinstance(other, ExperimentConfig) and self.to_dict() == other.to_dict()

    __hash__ = None

    # -- serialisation -------------------------------------------------
    def to_dict(self) -> dict:
        return self.model_dump()

    @classmethod
    def from_dict(cls, d: Any) -> "ExperimentConfig":
        """The config of a mapping (JSON/YAML); old flat keys are migrated (:func:`migrate`)."""
        if not isinstance(d, Mapping):
            raise UserError(f"config must be a mapping of sections, got {type(d).__name__}")
        d, moved = migrate(d)
        try:
            cfg = cls.model_validate(d)
        except pydantic.ValidationError as e:
            raise located_error(e, "", cls) from None
        cfg._legacy_keys = tuple(moved)
        return cfg

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_yaml(self, *, comments: bool = False) -> str:
        """YAML of the config; ``comments=True`` marks every registry choice with the
        names it allows (``show-config``)."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        return _comment_choices(text) if comments else text

    def save(self, path) -> pathlib.Path:
        """Write JSON (or YAML by suffix) atomically: a temporary file, fsync, replace."""
        from fedjax_grid.atomic_write import write_atomic
        path = pathlib.Path(path)
        text = self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json()
        return write_atomic(path, text)

    @classmethod
    def load(cls, path) -> "ExperimentConfig":
        from fedjax_grid.names import check_path
        path = pathlib.Path(check_path(path, "--config"))
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
            # JSON is a subset of YAML; an empty file, a list or a scalar is refused
            d = load_bounded(text, f"config file {name}", mapping=True)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise UserError(f"config file {name}{_yaml_line(e)} is not valid JSON/YAML: "
                            f"{show(_yaml_problem(e), 200)[1:-1]}") from None
        return cls.from_dict(d)

    @property
    def legacy_keys(self) -> tuple:
        """Flat keys of an earlier version this config was migrated from (empty if none)."""
        return self._legacy_keys

    def fingerprint(self) -> str:
        """Hash of everything that determines the trajectory of a run.

        Excludes what may change between an interrupted run and its resume:
        the number of rounds, the output directory, the cluster and tracking settings.
        """
        d = self.to_dict()
        d["training"].pop("rounds")
        d.pop("out_dir")
        d.pop("grid")
        d.pop("name")
        d.pop("tracking", None)
        # keys added later: at their defaults they leave older runs' fingerprints unchanged
        for section, key, default in (("server", "codec", "none"), ("server", "broadcast_codec", "none"),
                                      ("faults", "link", "none"), ("training", "algorithm", "fedavg")):
            if d[section].get(key) == {"name": default}:
                d[section].pop(key)
        if d["training"].get("precision") == "f32":
            d["training"].pop("precision")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    # -- overrides -------------------------------------------------------
    def with_overrides(self, assignments: list[str]) -> "ExperimentConfig":
        """Apply ``key=value`` strings (values parsed as YAML), see the module docstring."""
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
            _assign(d, resolve_key(key, d), value, raw)
        return ExperimentConfig.from_dict(d)

    def replace(self, **sections) -> "ExperimentConfig":
        """A copy with whole sections or top-level fields replaced (validated)."""
        d = self.to_dict()
        for k, v in sections.items():
            d[k] = v.model_dump() if isinstance(v, pydantic.BaseModel) else v
        return ExperimentConfig.from_dict(d)

    # -- validation ------------------------------------------------------
    def validate(self) -> "ExperimentConfig":
        """Check every value again (after in-place edits of mappings); one-line UserError
        on the first bad one. Returns ``self``."""
        ExperimentConfig.from_dict(self.to_dict())
        return self

    @property
    def clients_per_round(self) -> int:
        return self.training.clients_per_round or self.partition.num_clients


def _counts_across_sections(cfg: "ExperimentConfig") -> list[tuple]:
    """(key, value, least, largest value a run can satisfy, why) of the counts bounded by
    another field: clients per round by C; in async mode the tasks in flight by C (one
    per client) and the buffer by the tasks in flight (it could never fill); the
    overcommitted spares by the clients not sampled."""
    c = cfg.partition.num_clients
    cpr = cfg.training.clients_per_round
    out = [("training.clients_per_round", cpr, 1, c, "partition.num_clients")]
    if cfg.server.mode == "async":
        k = cfg.server.concurrency
        out.append(("server.concurrency", k, 1, c,
                    f"at most one task per client in flight: partition.num_clients={c}"))
        k_eff = k or cpr or c
        out.append(("server.buffer_size", cfg.server.buffer_size, 1, k_eff,
                    f"a buffer larger than the {k_eff} tasks in flight (server.concurrency) "
                    "never fills"))
    else:
        out.append(("grid.overcommit", cfg.grid.overcommit, 0, c - (cpr or c),
                    f"spares are sampled from the clients beyond training.clients_per_round="
                    f"{cpr or c} out of partition.num_clients={c}"))
    return out


# ------------------------------------------------------------------------- keys

def _leaf_keys() -> dict[str, list[str]]:
    """Bare name -> dotted keys holding it: section fields and the parameters of every
    registered component of every choice (``model.kwargs`` / ``data.options`` excluded)."""
    out: dict[str, list[str]] = {}
    for section, model in SECTIONS.items():
        for field in model.model_fields:
            out.setdefault(field, []).append(f"{section}.{field}")
    for key, registry in REGISTRIES.items():
        if key in PARAMS_AT:
            continue
        params = {p for e in registry.entries() for p in e.params.model_fields}
        for p in sorted(params):
            out.setdefault(p, []).append(f"{key}.{p}")
    return out


def resolve_key(key: str, d: Optional[dict] = None) -> list[str]:
    """'training.lr' -> ['training', 'lr']; 'share' -> the unique key holding it
    (['partition', 'distribution', 'share']); UserError for unknown or ambiguous keys."""
    parts = key.split(".")
    top = set(ExperimentConfig.model_fields) - set(SECTIONS)
    if len(parts) == 1:
        if parts[0] in top:
            return parts
        owners = _leaf_keys().get(parts[0], [])
        if len(owners) == 1:
            return owners[0].split(".")
        if len(owners) > 1:
            raise UserError(f"config key {show(key)} is ambiguous: use one of " + ", ".join(owners),
                            path=None)
        raise UserError(f"unknown config key {show(key)}: use section.field, sections are "
                        + ", ".join(SECTIONS))
    section, field = parts[0], parts[1]
    if section not in SECTIONS:
        raise UserError(f"unknown config key {show(key)}: use section.field, sections are "
                        + ", ".join(SECTIONS))
    fields = SECTIONS[section].model_fields
    if field not in fields:
        raise UserError(f"unknown config key {show(key)}: {section} has " + ", ".join(fields),
                        path=f"{section}.{field}")
    where = f"{section}.{field}"
    if len(parts) == 2:
        return parts
    if len(parts) == 3 and (where in REGISTRIES and where not in PARAMS_AT
                            or where in PARAMS_AT.values()):
        return parts
    raise UserError(f"unknown config key {show(key)}: {where} has no keys inside"
                    if where not in REGISTRIES else
                    f"unknown config key {show(key)}: use {where}.<parameter>", path=where)


def unique_overrides(assignments: list[str], flags: Optional[dict] = None) -> None:
    """UserError when two ``key=value`` assignments (``--set``) name the same key (after
    bare keys are resolved: ``rounds`` is ``training.rounds``), or one names a key that a
    flag sets too (``flags``: dotted key -> flag, e.g. ``{'grid.workers': '--workers'}``)."""
    seen: dict[str, str] = dict(flags or {})
    for item in assignments:
        if "=" not in item:
            continue  # with_overrides says what is wrong with it
        key = ".".join(resolve_key(item.split("=", 1)[0].strip()))
        if key in seen:
            raise UserError(f"config key {show(key)} is given twice ({seen[key]} and --set "
                            f"{show(item)[1:-1]}); allowed: each key once", path=key)
        seen[key] = f"--set {show(item)[1:-1]}"


def _assign(d: dict, path: list[str], value: Any, raw: str) -> None:
    """Set ``value`` at ``path`` in the config dict ``d`` (a choice's parameter, a
    whole choice, a model/data mapping or a field)."""
    target = d
    for i, part in enumerate(path[:-1]):
        where = ".".join(path[:i + 1])
        if isinstance(target.get(part), (str, Choice)) and where in REGISTRIES:
            target[part] = REGISTRIES[where].validate(target[part], where)  # 'fedadam' -> mapping
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    key = ".".join(path)
    if key in PARAMS_AT.values() and not isinstance(value, dict):
        raise UserError(f"--set {key}={show(raw)}: a mapping like {{width: 0.25}} is required",
                        path=key)
    choice = ".".join(path[:2])
    if len(path) == 3 and choice in REGISTRIES and choice not in PARAMS_AT:
        if path[-1] == "name":
            target.clear()   # a new component: its own defaults, not the old one's parameters
        else:                # a parameter must belong to the component chosen so far
            REGISTRIES[choice].validate({**target, path[-1]: value}, choice, fill=False)
    target[path[-1]] = value


# ------------------------------------------------------------------------- migration

#: Flat keys of earlier versions: (section, key) -> (choice field, parameter).
LEGACY_KEYS = {
    ("partition", "beta"): ("distribution", "beta"),
    ("partition", "share"): ("distribution", "share"),
    ("partition", "alpha"): ("distribution", "alpha"),
    ("partition", "shards_per_client"): ("distribution", "shards_per_client"),
    ("partition", "sigma"): ("distribution", "sigma"),
    ("partition", "keep"): ("forming", "keep"),
    ("server", "trim_fraction"): ("aggregator", "trim_fraction"),
    ("server", "clip_norm"): ("aggregator", "max_norm"),
    ("server", "lr"): ("optimizer", "lr"),
    ("server", "momentum"): ("optimizer", "momentum"),
    ("faults", "attack_scale"): ("attack", "scale"),
}


def migrate(d: Mapping) -> tuple[dict, list[str]]:
    """A config mapping of an earlier version in the current shape, and the flat keys moved.

    Each flat key (``partition.beta``, ``server.lr``, ...; ``LEGACY_KEYS``) goes into
    the mapping of the choice it parametrises (``partition.distribution``,
    ``server.optimizer``) when the chosen component has that parameter, and is
    dropped otherwise (the earlier version ignored it then too). A choice given by
    name keeps that name. Values are not checked here (validation follows).
    """
    out = dict(d)
    moved: list[str] = []
    for (section, key), (field, param) in LEGACY_KEYS.items():
        sec = out.get(section)
        if not isinstance(sec, Mapping) or key not in sec:
            continue
        sec = out[section] = dict(sec)
        value = sec.pop(key)
        moved.append(f"{section}.{key}")
        registry = REGISTRIES[f"{section}.{field}"]
        choice = sec.get(field, ExperimentConfig.model_fields[section].default_factory()
                         .model_dump()[field]["name"])
        if isinstance(choice, str) and choice in registry:
            choice = {"name": choice}
        if isinstance(choice, Mapping) and choice.get("name") in registry \
                and param in registry.get(choice["name"]).params.model_fields:
            sec[field] = {**choice, param: choice.get(param, value)}
    return out, moved


def _yaml_line(e: Exception) -> str:
    """' line N' of a YAML syntax error ('' when it has no position)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    return f" line {mark.line + 1}" if mark is not None else ""


def _yaml_problem(e: Exception) -> str:
    """What is wrong, in one line, without the position (said by ``_yaml_line``)."""
    text = " ".join(x for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x)
    return text or (str(e).splitlines()[0] if str(e) else type(e).__name__)


def _comment_choices(text: str) -> str:
    """``show-config`` YAML: each registry choice line gets ``# one of: a, b, c``."""
    lines, section = [], None
    for line in text.splitlines():
        m = re.match(r"^(\s*)([A-Za-z_]+):(.*)$", line)
        if m and not m.group(1):
            section = m.group(2)
        if m and len(m.group(1)) == 2 and section:
            key = f"{section}.{m.group(2)}"
            if key in REGISTRIES:
                line += f"  # one of: {', '.join(REGISTRIES[key])}"
        lines.append(line)
    return "\n".join(lines) + "\n"
