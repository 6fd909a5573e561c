"""Which widget edits which ``ExperimentConfig`` value: pure, no ipywidgets import.

Everything here is read from JSON schemas: the sections' ``model_json_schema()``
for their fields and ``Registry.schema(name)`` for the parameters of the chosen
component. ``field_specs()`` returns one :class:`FieldSpec` per section field
(dotted key such as ``'training.lr'``); a field backed by a registry
(``config.REGISTRIES``: ``model.name``, ``data.source``, ``partition.distribution``,
``partition.forming``, ``server.aggregator``, ``server.optimizer``,
``faults.attack``) is a ``'component'`` dropdown listing ``Registry.names()``, and
``param_specs(key, name)`` gives the fields of that component's parameters
(``partition.distribution.share``, ``model.kwargs.width``), rebuilt when the
dropdown changes. Widget kinds, from the schema's type and bounds:

- ``'component'`` a registry dropdown
- ``'choice'``   a dropdown of an enum (``Literal``; null offered when optional)
- ``'bool'``     a checkbox
- ``'int'``      an integer box
- ``'float'``    a number box
- ``'fraction'`` a number with both bounds inside [0, 1] (fractions and probabilities),
  typed in a box: a value outside its range is refused with the range, never clamped
- ``'text'``     a string; optional: an empty box means null
- ``'optional'`` an optional int/number typed as text (empty = null, else a number), or
  a number that may also be a word (``grid.quorum``: a fraction or 'auto')
- ``'mapping'`` / ``'list'`` YAML/JSON flow text, e.g. ``{width: 0.25}`` / ``[0, 90]``

Descriptions become the widgets' tooltips; ``label(spec)`` is the field's name in
whole words (``deadline_s`` -> "deadline (s)"). ``VISIBLE_WHEN`` hides fields that
only matter for some value of another field: the asynchronous policy's fields in
``server.mode=sync`` and the synchronous barrier's (quorum, overcommit, overlapped
rounds) in ``async``, the fault parameters while faults are off.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import yaml

from fedjax_grid.errors import UserError, show
from fedjax_grid.experiments import config as C
from fedjax_grid.registry import Registry

#: key -> (controlling key, predicate on its value): the field is shown only when true.
VISIBLE_WHEN: dict[str, tuple[str, Any]] = {
    "training.momentum": ("training.optimizer", lambda v: v == "momentum"),
    **{f"server.{name}": ("server.mode", lambda v: v == "async") for name in (
        "concurrency", "buffer_size", "staleness", "max_staleness", "max_lag")},
    **{f"grid.{name}": ("server.mode", lambda v: v != "async") for name in (
        "quorum", "overcommit", "overlap_rounds")},
    **{f"faults.{name}": ("faults.enabled", bool) for name in (
        "max_slowdown", "slow_by", "offline_prob", "max_delay_s", "dropout_prob", "error_prob",
        "hang_prob", "hang_s", "attack_fraction", "attack")},
}

#: Section order of the panel (top-level scalars first, under 'experiment').
SECTIONS = ("experiment", "model", "data", "partition", "training", "server", "grid", "faults",
            "tracking")

#: Registry-backed keys and where their parameters live (``model.name`` -> ``model.kwargs``).
REGISTRIES = C.REGISTRIES


#: Units written after a field's name in its label, by the name's suffix.
_UNITS = {"_s": "s", "_gib": "GiB", "_mb": "MB"}


def label(spec: "FieldSpec") -> str:
    """The field's name in whole words for its label: ``connect_timeout_s`` ->
    'connect timeout (s)', ``bn_calibration_examples`` -> 'bn calibration examples'."""
    name = spec.name
    for suffix, unit in _UNITS.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return f"{name[:-len(suffix)].replace('_', ' ')} ({unit})"
    return name.replace("_", " ")


def params_key(key: str) -> str:
    """Dotted prefix of the parameters of the component chosen at ``key``."""
    return C.PARAMS_AT.get(key, key)


#: Parameters of these choices are kept only when given (model.kwargs, data.options).
PARTIAL = frozenset(C.PARAMS_AT)


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    key: str                    # dotted key, e.g. 'training.lr' ('seed' at top level)
    section: str                # 'experiment' for top-level fields
    name: str                   # field or parameter name
    kind: str                   # see the module docstring
    optional: bool              # null allowed
    default: Any
    choices: tuple = ()         # 'choice' / 'component' options
    help: str = ""              # the schema's description
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    registry: Optional[Registry] = None   # 'component' only
    param: bool = False                   # a component's parameter


def _bounds(schema: dict) -> tuple[Optional[float], Optional[float]]:
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum", schema.get("exclusiveMaximum"))
    return lo, hi


def spec_from_schema(key: str, section: str, name: str, schema: dict, *,
                     param: bool = False) -> FieldSpec:
    """The FieldSpec of one property of a JSON schema."""
    optional = False
    inner = schema
    if "anyOf" in schema:
        types = [s for s in schema["anyOf"] if s.get("type") != "null"]
        optional = len(types) < len(schema["anyOf"])
        inner = types[0] if len(types) == 1 else {}
    kind, choices = _kind(inner, optional)
    numeric = [s for s in schema.get("anyOf", []) if s.get("type") in ("number", "integer")]
    words = [s for s in schema.get("anyOf", []) if "const" in s or "enum" in s]
    members = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if numeric and words and len(numeric) + len(words) == len(members):
        # a number or a word ('auto'): typed as text, read as YAML (30 -> 30, auto -> 'auto')
        kind, inner = "optional", numeric[0]
    if kind == "choice":
        choices = tuple(inner.get("enum", (False, True))) + ((None,) if optional else ())
    lo, hi = _bounds(inner)
    return FieldSpec(key, section, name, kind, optional, schema.get("default"), choices,
                     schema.get("description", ""), lo, hi, None, param)


def _kind(schema: dict, optional: bool) -> tuple[str, tuple]:
    typ = schema.get("type")
    if "enum" in schema or (typ == "boolean" and optional):
        return "choice", ()
    if typ == "boolean":
        return "bool", ()
    if typ == "object":
        return "mapping", ()
    if typ == "array":
        return "list", ()
    if typ == "string" or typ is None:
        return "text", ()
    if optional:
        return "optional", ()
    if typ == "integer":
        return "int", ()
    lo, hi = _bounds(schema)
    if lo is not None and hi is not None and 0.0 <= lo and hi <= 1.0:
        return "fraction", ()
    return "float", ()


def field_specs() -> list[FieldSpec]:
    """One spec per field of ExperimentConfig and its sections, in declaration order
    (``model.kwargs`` / ``data.options`` are edited through their parameters)."""
    out = []
    top = C.ExperimentConfig.model_json_schema()["properties"]
    for name, section in [(n, None) for n in top if n not in C.SECTIONS] + \
            [(n, n) for n in C.SECTIONS]:
        if section is None:
            out.append(spec_from_schema(name, "experiment", name, top[name]))
            continue
        props = C.SECTIONS[section].model_json_schema()["properties"]
        for field, schema in props.items():
            key = f"{section}.{field}"
            if key in C.PARAMS_AT.values():
                continue
            if key in REGISTRIES:
                reg = REGISTRIES[key]
                out.append(FieldSpec(key, section, field, "component", False, None, tuple(reg),
                                     schema.get("description", ""), registry=reg))
            else:
                out.append(spec_from_schema(key, section, field, schema))
    order = {s: i for i, s in enumerate(SECTIONS)}
    return sorted(out, key=lambda s: order[s.section])


def param_specs(key: str, name: str) -> list[FieldSpec]:
    """Specs of the parameters of component ``name`` of the choice at ``key``, from
    ``Registry.schema(name)`` (keys ``<params_key(key)>.<param>``)."""
    schema = REGISTRIES[key].schema(name)
    section, prefix = key.split(".")[0], params_key(key)
    return [spec_from_schema(f"{prefix}.{p}", section, p, s, param=True)
            for p, s in schema.get("properties", {}).items()]


def field_for(path: Optional[str], keys) -> Optional[str]:
    """The widget key an error ``path`` (``UserError.path``) is shown beside: the path
    itself, else the nearest enclosing key (``partition.distribution.name`` ->
    ``partition.distribution``; ``model.kwargs.foo`` -> ``model.name``)."""
    if not path:
        return None
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in keys:
            return key
        for choice, at in C.PARAMS_AT.items():
            if key == at and choice in keys:
                return choice
    return None


# -- text <-> value for the text-typed kinds ------------------------------------
TEXT_KINDS = ("text", "optional", "mapping", "list")


def format_value(spec: FieldSpec, value) -> str:
    """How a value is shown in a text box ('' for null, flow YAML for mappings/lists)."""
    if value is None:
        return ""
    if spec.kind in ("mapping", "list"):
        if not value:
            return "{}" if spec.kind == "mapping" else "[]"
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()
    return str(value)


def parse_text(spec: FieldSpec, text: str):
    """Value of a text box: '' -> null (or {} / [] for a mapping / list), numbers,
    mappings and lists via YAML. UserError with ``path=spec.key`` for unreadable text."""
    text = (text or "").strip()
    if spec.kind in ("mapping", "list"):
        if text == "":
            return {} if spec.kind == "mapping" else []
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = None
        wanted = dict if spec.kind == "mapping" else list
        if not isinstance(value, wanted):
            example = "{width: 0.25, norm: batch}" if spec.kind == "mapping" else "[0, 90]"
            raise UserError(f"{spec.key}={show(text)} is invalid: a {spec.kind} like {example} "
                            "is required", path=spec.key)
        return value
    if text == "" or text.lower() in ("none", "null"):
        return None if spec.optional else ""
    if spec.kind == "optional":
        try:
            return yaml.safe_load(text)   # type-checked by the config
        except yaml.YAMLError:
            return text
    return text
