"""One registry per plug-in point: a component registers its name and typed parameters.

Plug-in points (each module owning one holds a module-level ``Registry``):
models, data sources, distributions, forming strategies, aggregators, server
optimisers, attacks. A component is one file::

    from pydantic import Field
    from fedjax_grid.partition.distributions import DISTRIBUTIONS
    from fedjax_grid.registry import Params

    class PathologicalParams(Params):
        k: int = Field(2, ge=1, description="classes per client")

    @DISTRIBUTIONS.register("pathological", PathologicalParams)
    def pathological(labels, num_clients, rng, params): ...

The config stores a choice as ``{name: ..., <param>: ...}`` (a mapping holding the
name and that component's own parameters); ``Registry.validate`` checks it against
the registered ``Params`` model and raises a :class:`~fedjax_grid.errors.UserError`
whose ``path`` is the dotted config key of the bad value. Everything that offers a
choice -- config validation, CLI help, ``presets``/``show-config``, widget
dropdowns and fields -- reads ``names()`` and ``schema(name)`` from here.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

import pydantic

from fedjax_grid.errors import UserError, show


class Params(pydantic.BaseModel):
    """Base of a component's typed parameters: unknown keys are refused."""
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    """A component without parameters."""


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    obj: Any                    # the function or class registered
    params: type[Params]        # its typed parameters
    doc: str                    # first line of its docstring


#: ``name(1.5)`` / ``name(a=1, b=2)`` shorthand of a choice with parameters.
_CALL = re.compile(r"^\s*([A-Za-z_][\w\-]*)\s*(?:\((.*)\))?\s*$")


class Registry:
    """Named components of one plug-in point (e.g. ``DISTRIBUTIONS``)."""

    def __init__(self, kind: str):
        self.kind = kind                  # e.g. 'distribution' (in error messages)
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, params: type[Params] = NoParams, *, replace: bool = False
                 ) -> Callable[[Any], Any]:
        """Decorator: register ``obj`` under ``name`` with its ``params`` model."""
        def deco(obj):
            if name in self._entries and not replace:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            doc = ((getattr(obj, "__doc__", None) or "").strip().splitlines() or [""])[0]
            self._entries[name] = Entry(name, obj, params, doc)
            return obj
        return deco

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def get(self, name: str, path: str = "") -> Entry:
        """The entry of ``name``; UserError naming the allowed names otherwise."""
        if not isinstance(name, str) or name not in self._entries:
            where = f"{path}={show(name)}" if path else f"{self.kind} {show(name)}"
            raise UserError(f"{where} is invalid: allowed are " + ", ".join(self._entries),
                            path=path or None)
        return self._entries[name]

    def schema(self, name: str) -> dict:
        """JSON schema of ``name``'s parameters (drives widget fields and CLI help)."""
        return self.get(name).params.model_json_schema()

    def defaults(self, name: str) -> dict:
        return self.get(name).params().model_dump()

    def validate(self, spec: Any, path: str) -> dict:
        """``{name, **params}`` checked and completed with defaults.

        ``spec`` may be a mapping with a ``name`` key, a bare name, or the shorthand
        ``'name(v)'`` (first parameter) / ``'name(k=v, ...)'``. UserError with
        ``path`` pointing at the bad key (``path.name`` or ``path.<param>``).
        """
        spec = parse_call(spec, self, path) if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or "name" not in spec:
            raise UserError(f"{path}={show(spec)} is invalid: a name (allowed: "
                            + ", ".join(self._entries) + ") or a mapping {name: ..., ...} is required",
                            path=path)
        entry = self.get(spec["name"], f"{path}.name")
        values = {k: v for k, v in spec.items() if k != "name"}
        try:
            params = entry.params(**values)
        except pydantic.ValidationError as e:
            raise located_error(e, path) from None
        return {"name": entry.name, **params.model_dump()}

    def build(self, spec: dict, **context):
        """Call the registered object with the spec's parameters and ``context``."""
        entry = self.get(spec["name"])
        params = entry.params(**{k: v for k, v in spec.items() if k != "name"})
        return entry.obj(params=params, **context)


def parse_call(text: str, registry: Registry, path: str) -> dict:
    """``'stratified(0.9)'`` -> ``{'name': 'stratified', 'share': 0.9}`` (the first field);
    ``'hybrid(keep=0.3)'`` -> ``{'name': 'hybrid', 'keep': 0.3}``; ``'iid'`` -> ``{'name': 'iid'}``."""
    import yaml
    m = _CALL.match(text)
    if m is None:
        raise UserError(f"{path}={show(text)} is invalid: a name like "
                        f"{registry.names()[0] if registry.names() else 'name'} or name(value) "
                        "is required", path=path)
    name, args = m.group(1), (m.group(2) or "").strip()
    entry = registry.get(name, f"{path}.name")
    out: dict = {"name": name}
    if not args:
        return out
    fields = list(entry.params.model_fields)
    for i, part in enumerate(a.strip() for a in args.split(",")):
        key, _, raw = part.rpartition("=") if "=" in part else ("", "", part)
        key = key.strip() or (fields[i] if i < len(fields) else "")
        if not key:
            raise UserError(f"{path}={show(text)} is invalid: {name} takes "
                            f"{len(fields)} parameter(s) ({', '.join(fields) or 'none'})",
                            path=path)
        try:
            out[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key] = raw
    return out


def located_error(err: pydantic.ValidationError, prefix: str = "") -> UserError:
    """The first error of a pydantic ValidationError as a one-line UserError with its path."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    path = ".".join(p for p in (prefix, loc) if p)
    value = first.get("input")
    if first["type"] == "extra_forbidden":
        return UserError(f"unknown config key {show(path)}", path=path)
    msg = first["msg"].replace("Input should be", "it should be").replace("Value error, ", "")
    return UserError(f"{path}={show(value)} is invalid: {msg}", path=path)


def describe(registry: Registry) -> str:
    """One line per component: ``name(param=default, ...)  doc`` (CLI help)."""
    lines = []
    for name in registry.names():
        entry = registry.get(name)
        args = ", ".join(f"{k}={v!r}" for k, v in entry.params().model_dump().items())
        lines.append(f"{name}({args})" + (f"  {entry.doc}" if entry.doc else ""))
    return "\n".join(lines)
