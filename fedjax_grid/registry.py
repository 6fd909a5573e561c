"""One registry per plug-in point: a component registers its name and typed parameters.

Plug-in points (the module owning one holds a module-level ``Registry``; the
package named after it imports all its modules, so a new file registers itself):

- models: ``fedjax_grid.models.MODELS`` (package ``fedjax_grid.models``)
- data sources: ``fedjax_grid.data.registry.SOURCES`` (``fedjax_grid.data``, on first read)
- distributions: ``fedjax_grid.partition.distributions.DISTRIBUTIONS`` (``fedjax_grid.partition``)
- forming strategies: ``fedjax_grid.partition.forming.FORMING`` (``fedjax_grid.partition``)
- aggregators: ``fedjax_grid.federated.aggregators.AGGREGATORS`` (``fedjax_grid.federated``)
- server optimisers: ``fedjax_grid.federated.server.SERVER_OPTIMIZERS`` (``fedjax_grid.federated``)
- client algorithms: ``fedjax_grid.federated.client_algorithms.CLIENT_ALGORITHMS``
- staleness weights: ``fedjax_grid.federated.staleness.STALENESS``
- round policies: ``fedjax_grid.federated.round_policies.ROUND_POLICIES`` (package
  ``fedjax_grid.runner.policies``, on first read)
- codecs: ``fedjax_grid.compression.CODECS`` (``fedjax_grid.compression``)
- attacks and link presets (fault simulation): ``fedjax_grid.hazards.faults.ATTACKS``,
  ``fedjax_grid.hazards.links.LINKS``

A component is one file in its package (the package's ``__init__`` imports every
module in it with :func:`import_submodules`, so a new file registers itself)::

    from pydantic import Field
    from fedjax_grid.partition.distributions import DISTRIBUTIONS
    from fedjax_grid.registry import Params

    class PathologicalParams(Params):
        k: int = Field(2, ge=1, description="classes per client")

    @DISTRIBUTIONS.register("pathological", PathologicalParams, label_skewed=True)
    def pathological(labels, num_clients, rng, info, params): ...   # params.k

The registered object is called as ``obj(*args, params=<its typed Params>, **context)``
(``Registry.build``). The config stores a choice as a :class:`Choice`:
a mapping ``{name: ..., <param>: ...}`` holding the name and that component's own
parameters, completed with its defaults. ``Registry.validate`` checks a choice
against the registered ``Params`` model and raises a one-line
:class:`~fedjax_grid.errors.UserError` whose ``path`` is the dotted config key of
the bad value. Everything that offers a choice -- config validation, CLI help,
``presets``/``show-config``, widget dropdowns and fields -- reads ``names()`` and
``schema(name)`` from here.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional

import annotated_types
import pydantic

from fedjax_grid.errors import UserError, show


class Params(pydantic.BaseModel):
    """Base of a component's typed parameters: unknown keys are refused, numbers must
    be finite, no silent type conversion (an int is accepted for a float)."""
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True,
                                       allow_inf_nan=False)


class NoParams(Params):
    """A component without parameters."""


class Choice(pydantic.BaseModel):
    """A validated choice of a component: ``name`` plus that component's parameters
    (attributes, e.g. ``cfg.server.optimizer.lr``); ``dict(choice.params)`` and
    ``choice.model_dump()`` (``{'name': ..., **params}``) give them as mappings.
    ``str(choice)`` is the shorthand ``'stratified(0.9)'`` / ``'fedadam(lr=0.01, ...)'``
    that ``parse_call`` reads back. Built by :meth:`Registry.choice`."""
    model_config = pydantic.ConfigDict(extra="allow", frozen=True)
    name: str

    @property
    def params(self) -> dict:
        return dict(self.__pydantic_extra__ or {})

    # read as the mapping {name, **params} too (``spec['name']``, ``spec.items()``, ``dict(spec)``)
    def __getitem__(self, key: str):
        return self.model_dump()[key]

    def keys(self):
        return self.model_dump().keys()

    def items(self):
        return self.model_dump().items()

    def get(self, key: str, default=None):
        return self.model_dump().get(key, default)

    def __contains__(self, key) -> bool:
        return key in self.model_dump()

    def __str__(self) -> str:
        shown = {k: v for k, v in self.params.items() if v is not None}
        if not shown:
            return self.name
        first = next(iter(self.params))
        if len(shown) == 1 and first in shown:
            return f"{self.name}({_fmt(shown[first])})"
        return f"{self.name}(" + ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items()) + ")"


def _fmt(v) -> str:
    return repr(v) if not isinstance(v, str) else v


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    obj: Any                    # the function or object registered
    params: type[Params]        # its typed parameters
    doc: str                    # one line: what it is
    meta: Mapping = dataclasses.field(default_factory=dict)   # registry-specific facts


#: ``name(1.5)`` / ``name(a=1, b=2)`` shorthand of a choice with parameters.
_CALL = re.compile(r"^\s*([A-Za-z_][\w\-]*)\s*(?:\((.*)\))?\s*$", re.S)


class Registry(Sequence):
    """Named components of one plug-in point (e.g. ``DISTRIBUTIONS``).

    kind: what a component is, in messages ('distribution', 'server optimizer').
    package: a package whose modules are imported (:func:`import_submodules`) the
    first time the registry is read, for registries whose package does not import
    its modules itself (data sources: importing ``fedjax_grid.data`` stays cheap).
    A registry is also the sequence of its names in registration order
    (``'iid' in DISTRIBUTIONS``, ``', '.join(DISTRIBUTIONS)``, ``DISTRIBUTIONS[0]``).
    """

    def __init__(self, kind: str, package: Optional[str] = None):
        self.kind = kind
        self._entries_: dict[str, Entry] = {}
        self._package = package

    @property
    def _entries(self) -> dict[str, Entry]:
        if self._package is not None:
            package, self._package = self._package, None
            import_submodules(package)
        return self._entries_

    def register(self, name: str, params: type[Params] = NoParams, *, doc: Optional[str] = None,
                 replace: bool = False, **meta) -> Callable[[Any], Any]:
        """Decorator: register ``obj`` under ``name`` with its ``params`` model.

        doc: one line describing it (default: the first line of ``obj``'s docstring);
        meta: registry-specific facts (e.g. ``label_skewed=True`` for distributions);
        replace: allow registering a name again (tests, notebooks).
        """
        if not isinstance(params, type) or not issubclass(params, Params):
            raise TypeError(f"{self.kind} {name!r}: params must be a Params subclass")

        def deco(obj):
            if name in self._entries_ and not replace:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            text = doc if doc is not None else (getattr(obj, "__doc__", None) or "")
            first = (text.strip().splitlines() or [""])[0]
            self._entries_[name] = Entry(name, obj, params, first, types.MappingProxyType(meta))
            return obj
        return deco

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a component temporarily)."""
        self._entries.pop(name, None)

    # -- lookup -------------------------------------------------------------------
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self):
        """The names, in registration order (so ``', '.join(REGISTRY)`` lists them)."""
        return iter(tuple(self._entries))

    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index):
        return tuple(self._entries)[index]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"

    def get(self, name: str, path: str = "") -> Entry:
        """The entry of ``name``; UserError naming the allowed names otherwise."""
        if name not in self:
            allowed = ", ".join(self._entries)
            if path:
                raise UserError(f"{path}={show(name)} is invalid: allowed are {allowed}", path=path)
            raise UserError(f"unknown {self.kind} {show(name)}; allowed: {allowed}")
        return self._entries[name]

    def schema(self, name: str) -> dict:
        """JSON schema of ``name``'s parameters (drives widget fields and CLI help)."""
        return self.get(name).params.model_json_schema()

    def defaults(self, name: str) -> dict:
        return self.get(name).params().model_dump()

    def meta(self, name: str, key: str, default=None):
        return self.get(name).meta.get(key, default)

    # -- validation -----------------------------------------------------------------
    def validate(self, spec: Any, path: str = "", *, fill: bool = True) -> dict:
        """``{name, **params}`` checked and (``fill``) completed with defaults.

        spec: a :class:`Choice`, a mapping with a ``name`` key, a bare name, or the
        shorthand ``'name(v)'`` (first parameter) / ``'name(k=v, ...)'``.
        path: the dotted config key of the choice (e.g. ``partition.distribution``);
        errors then carry ``path`` (``path.name`` for a bad name, ``path.<param>`` for a
        bad parameter). Without it messages name the component (direct API calls).
        fill=False keeps only the parameters given (``model.kwargs``, ``data.options``).
        """
        if isinstance(spec, Choice):
            spec = spec.model_dump()
        elif isinstance(spec, str):
            spec = parse_call(spec, self, path)
        if not isinstance(spec, Mapping) or "name" not in spec:
            where = path or self.kind
            raise UserError(f"{where}={show(spec)} is invalid: a name (allowed: "
                            + ", ".join(self._entries) + ") or a mapping {name: ..., ...} "
                            "is required", path=path or None)
        entry = self.get(spec["name"], f"{path}.name" if path else "")
        values = {k: v for k, v in spec.items() if k != "name"}
        params = self.params(entry.name, values, path)
        dumped = params.model_dump() if fill else {k: getattr(params, k) for k in values}
        return {"name": entry.name, **dumped}

    def params(self, name: str, values: Mapping, path: str = "") -> Params:
        """The typed ``Params`` of ``name`` from ``values``; located UserError if invalid."""
        entry = self.get(name, path)
        bad = [k for k in values if not isinstance(k, str)]
        if bad:
            raise UserError(f"{path or name}: parameter name {show(bad[0])} is not a string",
                            path=path or None)
        try:
            return entry.params(**values)
        except pydantic.ValidationError as e:
            if path:
                raise located_error(e, path, entry.params, owner=f"{self.kind} {entry.name}") from None
            raise located_error(e, "", entry.params, noun="parameter",
                                context=f"{self.kind} {entry.name}: ") from None

    def choice(self, spec: Any, path: str = "") -> Choice:
        """The validated :class:`Choice` of ``spec`` (see :meth:`validate`)."""
        return Choice(**self.validate(spec, path))

    def build(self, spec: Any, *args, **context):
        """``obj(*args, params=<typed Params>, **context)`` of the registered object;
        ``spec`` as for :meth:`validate`."""
        d = self.validate(spec)
        entry = self.get(d.pop("name"))
        return entry.obj(*args, params=entry.params(**d), **context)

    # -- text ---------------------------------------------------------------------------
    def signature(self, name: str) -> str:
        """``name(param=default, ...)``."""
        entry = self.get(name)
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in entry.params().model_dump().items())
        return f"{name}({args})" if args else name

    def describe(self) -> str:
        """One line per component: ``name(param=default, ...)  doc`` (CLI help)."""
        return describe(self)


def parse_call(text: str, registry: Registry, path: str = "") -> dict:
    """``'stratified(0.9)'`` -> ``{'name': 'stratified', 'share': 0.9}`` (the first field);
    ``'hybrid(keep=0.3)'`` -> ``{'name': 'hybrid', 'keep': 0.3}``; ``'iid'`` -> ``{'name': 'iid'}``.

    Values are read as YAML scalars; the name is checked against ``registry``.
    """
    import yaml
    m = _CALL.match(text)
    if m is None:
        where = path or registry.kind
        raise UserError(f"{where}={show(text)} is invalid: a name like "
                        f"{registry.names()[0] if registry.names() else 'name'} or name(value) "
                        "is required", path=path or None)
    name, args = m.group(1), (m.group(2) or "").strip()
    entry = registry.get(name, f"{path}.name" if path else "")
    out: dict = {"name": name}
    if not args:
        return out
    fields = list(entry.params.model_fields)
    for i, part in enumerate(a.strip() for a in args.split(",")):
        key, _, raw = part.partition("=") if "=" in part else ("", "", part)
        key = key.strip() or (fields[i] if i < len(fields) else "")
        if not key:
            where = path or registry.kind
            takes = f"parameters {', '.join(fields)}" if fields else "no parameters"
            raise UserError(f"{where}={show(text)} is invalid: {name} takes {takes}",
                            path=path or None)
        if key in out:  # 'quant(bits=3, bits=4)', 'stratified(0.9, share=0.8)': not last-wins
            where = path or registry.kind
            raise UserError(f"{where}={show(text)} is invalid: parameter {key} is given twice; "
                            "allowed: each parameter once", path=f"{path}.{key}" if path else None)
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            out[key] = raw.strip()
    return out


# ---------------------------------------------------------------------------- errors

def _unwrap(annotation):
    """(base type, optional) of ``Optional[X]`` / ``X | None`` / ``X``."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return annotation, False


def field_at(model, loc) -> tuple[Optional[Any], Optional[type]]:
    """(FieldInfo at ``loc``, the model class holding it) inside ``model``; (None, None)
    when ``loc`` leaves the typed models (a mapping's key, a list item)."""
    field, owner = None, None
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)) \
                or part not in model.model_fields:
            return None, None
        field, owner = model.model_fields[part], model
        model = _unwrap(field.annotation)[0]
    return field, owner


def _num(v) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return str(int(v))
    return str(v)


def allowed_text(field) -> str:
    """What a field accepts, in words: 'an integer in [1, 100000]', 'a finite number > 0',
    'one of a, b', 'true or false' (optionally '..., or null')."""
    base, optional = _unwrap(field.annotation)
    lo = hi = None
    lo_open = hi_open = False
    for m in field.metadata:
        if isinstance(m, annotated_types.Ge):
            lo = m.ge
        elif isinstance(m, annotated_types.Gt):
            lo, lo_open = m.gt, True
        elif isinstance(m, annotated_types.Le):
            hi = m.le
        elif isinstance(m, annotated_types.Lt):
            hi, hi_open = m.lt, True
    if typing.get_origin(base) is typing.Literal:
        text = "one of " + ", ".join(map(str, typing.get_args(base)))
    elif base is bool:
        return "true, false or null" if optional else "true or false"
    elif base in (int, float):
        text = "an integer" if base is int else "a finite number"
        if lo is not None and hi is not None:
            text += f" in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
        elif lo is not None:
            text += f" {'>' if lo_open else '>='} {_num(lo)}"
        elif hi is not None:
            text += f" {'<' if hi_open else '<='} {_num(hi)}"
    elif base is str:
        text = "a string"
    elif typing.get_origin(base) in (dict, Mapping) or base is dict:
        text = "a mapping"
    elif typing.get_origin(base) in (list, tuple) or base in (list, tuple):
        text = "a list"
    else:
        text = "a valid value"
    return text + (", or null" if optional else "")


def located_error(err: pydantic.ValidationError, prefix: str = "", model=None, *,
                  noun: str = "config key", context: str = "", owner: str = "") -> UserError:
    """The first error of a pydantic ValidationError as a one-line UserError with its path.

    prefix: dotted path of the validated object in the config ('' at the top);
    model: the validated model class, to state what a field allows (its type and
    bounds) and which keys a mapping has; noun: what an unknown key is called
    ('config key', 'parameter'); owner: the component whose parameters the mapping
    holds ('distribution iid': an unknown key then lists its parameters); context: text
    put before the message (direct API calls without a config path). A UserError
    raised by a validator inside (it already knows its path) is returned as it is.
    """
    first = err.errors()[0]
    inner = (first.get("ctx") or {}).get("error")
    if isinstance(inner, UserError):
        return inner
    loc = [str(p) for p in first["loc"]]
    path = ".".join(p for p in (prefix, *loc) if p)
    where = path if prefix or not context else ".".join(loc)
    located = path if not context else None
    value = first.get("input")
    if first["type"] == "extra_forbidden":
        owner_fields = _fields_of(model, loc[:-1])
        if owner:
            takes = f"parameters {', '.join(owner_fields)}" if owner_fields else "no parameters"
            return UserError(f"{context}unknown {noun} {show(where)}: {owner} takes {takes}",
                             path=located)
        allowed = ", ".join(owner_fields) if owner_fields else "none"
        return UserError(f"{context}unknown {noun} {show(where)}; allowed: {allowed}",
                         path=located)
    if first["type"] in ("model_type", "model_attributes_type", "dict_type") and loc:
        return UserError(f"{context}config section {show(where)} must be a mapping, got {show(value)}",
                         path=located)
    if first["type"] == "missing":
        field, _ = field_at(model, first["loc"]) if model is not None else (None, None)
        what = allowed_text(field) if field is not None else "a value"
        return UserError(f"{context}{where} is required: {what}", path=located)
    field, _ = field_at(model, first["loc"]) if model is not None else (None, None)
    if field is not None:
        allowed = allowed_text(field)
        if allowed.startswith("one of "):
            msg = "allowed are " + allowed[len("one of "):]
        else:
            msg = f"{allowed} is required"
    else:
        msg = first["msg"].replace("Input should be", "it should be").replace("Value error, ", "")
    return UserError(f"{context}{where}={show(value)} is invalid: {msg}",
                     path=located)


def _fields_of(model, loc) -> list[str]:
    if model is None:
        return []
    if loc:
        field, _ = field_at(model, loc)
        model = _unwrap(field.annotation)[0] if field is not None else None
    if isinstance(model, type) and issubclass(model, pydantic.BaseModel):
        return list(model.model_fields)
    return []


# ---------------------------------------------------------------------------- packages

def import_submodules(package: str) -> None:
    """Import every module of ``package`` (not starting with '_'), so that the
    components they register are known: a new file in the package registers itself."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def describe(registry: Registry) -> str:
    """One line per component: ``name(param=default, ...)  doc`` (CLI help)."""
    lines = []
    for name in registry.names():
        doc = registry.get(name).doc
        lines.append(registry.signature(name) + (f"  {doc}" if doc else ""))
    return "\n".join(lines)
