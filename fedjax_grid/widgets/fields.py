"""Which widget edits which ``ExperimentConfig`` field: pure, no ipywidgets import.

``field_specs()`` walks the dataclass fields of :class:`ExperimentConfig` and
its sections and returns one :class:`FieldSpec` per leaf field (dotted key such
as ``'partition.beta'``), with the widget kind chosen from the annotated type:

- ``'choice'``   a str with a fixed set of values (the tuples in ``config.py``)
- ``'bool'``     a checkbox
- ``'int'``      an integer box
- ``'float'``    a number box
- ``'slider'``   a float in [0, 1] (fractions and probabilities)
- ``'text'``     a str; Optional values: an empty box means None
- ``'optional'`` an Optional int/float typed as text (empty = None, else a number)
- ``'mapping'``  a dict typed as a YAML/JSON flow mapping, e.g. ``{width: 0.25}``

``VISIBLE_WHEN`` says which fields only matter for some value of another field
(beta only for the balanced distribution, keep only for hybrid forming, ...).
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Optional, get_type_hints

import yaml

from fedjax_grid.errors import UserError
from fedjax_grid.experiments import config as C

#: key -> allowed values of the choice fields.
CHOICES: dict[str, tuple[str, ...]] = {
    "model.name": C.MODELS,
    "data.source": C.SOURCES,
    "data.mode": C.DATA_MODES,
    "partition.distribution": C.DISTRIBUTIONS,
    "partition.forming": C.FORMING,
    "training.optimizer": C.OPTIMIZERS,
    "server.aggregator": C.AGGREGATORS,
    "server.optimizer": C.SERVER_OPTIMIZERS,
    "server.bn_mode": C.BN_MODES,
}

#: Float fields bounded to [0, 1]: shown as sliders.
UNIT_INTERVAL = frozenset({
    "partition.beta", "partition.share", "partition.keep", "training.momentum",
    "server.momentum", "grid.quorum",
    "faults.offline_prob", "faults.dropout_prob", "faults.error_prob", "faults.hang_prob",
})

#: key -> (controlling key, predicate on its value): the field is shown only when true.
VISIBLE_WHEN: dict[str, tuple[str, Any]] = {
    "partition.beta": ("partition.distribution", lambda v: v == "balanced"),
    "partition.share": ("partition.distribution", lambda v: v == "stratified"),
    "partition.alpha": ("partition.distribution", lambda v: v == "dirichlet"),
    "partition.shards_per_client": ("partition.distribution", lambda v: v == "shards"),
    "partition.sigma": ("partition.distribution", lambda v: v == "quantity"),
    "partition.keep": ("partition.forming", lambda v: v == "hybrid"),
    "training.momentum": ("training.optimizer", lambda v: v == "momentum"),
    "server.trim_fraction": ("server.aggregator", lambda v: v == "trimmed_mean"),
    "server.clip_norm": ("server.aggregator", lambda v: v == "clipped_mean"),
    "server.momentum": ("server.optimizer", lambda v: v == "fedavgm"),
    **{f"faults.{name}": ("faults.enabled", bool) for name in (
        "max_slowdown", "offline_prob", "max_delay_s", "dropout_prob", "error_prob",
        "hang_prob", "hang_s")},
}

#: Section order of the panel (top-level scalars first, under 'experiment').
SECTIONS = ("experiment", "model", "data", "partition", "training", "server", "grid", "faults")


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    key: str                    # dotted key, e.g. 'partition.beta' ('seed' at top level)
    section: str                # 'experiment' for top-level fields
    name: str                   # field name
    kind: str                   # see the module docstring
    optional: bool              # None allowed
    default: Any
    choices: tuple = ()
    help: str = ""              # the field's ``#:`` comment in config.py


def _field_docs(cls) -> dict[str, str]:
    """``#:`` comments written just above each field of a dataclass."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    docs, pending = {}, []
    for line in lines:
        s = line.strip()
        if s.startswith("#:"):
            pending.append(s[2:].strip())
            continue
        m = re.match(r"(\w+)\s*:", s)
        if m and pending:
            docs[m.group(1)] = " ".join(pending)
        pending = []
    return docs


def _kind(key: str, typ) -> tuple[str, bool]:
    args = getattr(typ, "__args__", None)
    optional = bool(args) and type(None) in args
    base = [a for a in args if a is not type(None)][0] if optional else typ
    if key in CHOICES:
        return "choice", optional
    if base is bool:
        return "bool", optional
    if base is dict:
        return "mapping", optional
    if base is str:
        return "text", optional
    if optional:
        return "optional", True
    if base is int:
        return "int", False
    if base is float:
        return "slider" if key in UNIT_INTERVAL else "float", False
    raise TypeError(f"no widget for {key} of type {typ!r}")


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def field_specs() -> list[FieldSpec]:
    """One spec per leaf field of ExperimentConfig, in declaration order."""
    out = []
    top_hints = get_type_hints(C.ExperimentConfig)
    top_docs = _field_docs(C.ExperimentConfig)
    for f in dataclasses.fields(C.ExperimentConfig):
        typ = top_hints[f.name]
        if dataclasses.is_dataclass(typ):
            hints, docs = get_type_hints(typ), _field_docs(typ)
            for g in dataclasses.fields(typ):
                key = f"{f.name}.{g.name}"
                kind, opt = _kind(key, hints[g.name])
                out.append(FieldSpec(key, f.name, g.name, kind, opt, _default(g),
                                     CHOICES.get(key, ()), docs.get(g.name, "")))
        else:
            kind, opt = _kind(f.name, typ)
            out.append(FieldSpec(f.name, "experiment", f.name, kind, opt, _default(f),
                                 CHOICES.get(f.name, ()), top_docs.get(f.name, "")))
    return out


# -- text <-> value for the text-typed kinds ------------------------------------
def format_value(spec: FieldSpec, value) -> str:
    """How a value is shown in a text box ('' for None, flow YAML for mappings)."""
    if value is None:
        return ""
    if spec.kind == "mapping":
        return yaml.safe_dump(dict(value), default_flow_style=True, sort_keys=False).strip() \
            if value else "{}"
    return str(value)


def parse_text(spec: FieldSpec, text: str):
    """Value of a text box: '' -> None (or {} for a mapping), numbers/mappings via YAML.

    Raises UserError naming the key for text that cannot be read.
    """
    text = (text or "").strip()
    if spec.kind == "mapping":
        if text == "":
            return {}
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = None
        if not isinstance(value, dict):
            raise UserError(f"{spec.key}={text!r} is invalid: a mapping like "
                            "{width: 0.25, norm: batch} is required")
        return value
    if text == "" or text.lower() in ("none", "null"):
        if spec.optional:
            return None
        return ""
    if spec.kind == "optional":
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        return value  # type-checked by ExperimentConfig.from_dict
    return text


#: ``section.field=...`` at the start of a UserError message.
_KEY_RE = re.compile(r"^(?:unknown config key )?'?([a-z_]+(?:\.[a-z_]+)?)'?[=: ]")


def error_key(message: str, keys) -> Optional[str]:
    """The field a one-line UserError message is about (None when it names none)."""
    m = _KEY_RE.match(message)
    if m and m.group(1) in keys:
        return m.group(1)
    for k in sorted(keys, key=len, reverse=True):  # e.g. 'partition.num_clients=9 exceeds ...'
        if re.search(rf"(?<![\w.]){re.escape(k)}=", message):
            return k
    return None
