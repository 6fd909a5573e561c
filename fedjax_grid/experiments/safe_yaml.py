"""Bounded YAML/JSON parsing for config files and ``--set`` values.

``yaml.safe_load`` keeps anchors and aliases as shared references, so a small
alias-expansion bomb ("billion laughs") loads quickly and then hangs whatever walks it
(``dataclasses.asdict``, ``json.dumps``). ``load_bounded`` refuses, with a one-line
``UserError``, text over ``MAX_BYTES`` bytes, more than ``MAX_ALIASES`` aliases, a
document that expands to more than ``MAX_NODES`` values (aliases counted as often as
they are used), and nesting deeper than Python's recursion allows.

It also refuses, with the line: a key given twice in one mapping (PyYAML keeps the last
one silently; a ``<<: *base`` merge may still be overridden), and -- with
``mapping=True``, for a config file -- a document that is empty, null, a list, a
boolean, a number or a string instead of a mapping of sections.
"""
from __future__ import annotations

import yaml

from fedjax_grid.errors import UserError, show

#: Largest config text accepted (bytes).
MAX_BYTES = 1_000_000
#: Most aliases (``*name``) one document may use.
MAX_ALIASES = 100
#: Most values (mapping keys and values, list items, scalars) after expanding aliases.
MAX_NODES = 100_000


class _Loader(yaml.SafeLoader):
    """SafeLoader that counts alias uses while composing and refuses duplicate keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _TooBig(f"more than {MAX_ALIASES} YAML aliases")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<: *base': its keys may be overridden here
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in first:
                        raise _Duplicate(key, key_node.start_mark.line + 1, first[key])
                    first[key] = key_node.start_mark.line + 1
                except TypeError:  # an unhashable key: PyYAML refuses it below
                    continue
        return super().construct_mapping(node, deep=deep)


class _TooBig(Exception):
    pass


class _Duplicate(Exception):
    def __init__(self, key, line: int, first: int):
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


#: What a document that is not a mapping is, by its YAML tag.
_KINDS = {"tag:yaml.org,2002:seq": "a list", "tag:yaml.org,2002:bool": "a boolean",
          "tag:yaml.org,2002:int": "a number", "tag:yaml.org,2002:float": "a number",
          "tag:yaml.org,2002:str": "a string", "tag:yaml.org,2002:null": "null",
          "tag:yaml.org,2002:timestamp": "a date"}


def _check_document(node, what: str) -> None:
    """UserError unless the document's root ``node`` is a mapping (a config file)."""
    allowed = "allowed: a mapping of sections like 'training: {rounds: 3}'"
    if node is None:
        raise UserError(f"{what} is empty (no YAML/JSON document); {allowed}")
    if not isinstance(node, yaml.MappingNode):
        kind = _KINDS.get(node.tag, "not a mapping")
        raise UserError(f"{what} line {node.start_mark.line + 1}: the document is {kind}, "
                        f"not a mapping of sections; {allowed}")


def _check_expanded_size(obj) -> None:
    count, stack = 0, [obj]
    while stack:
        o = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise _TooBig(f"more than {MAX_NODES} values once aliases are expanded")
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)


def load_bounded(text: str, what: str, *, mapping: bool = False):
    """Parse ``text`` (YAML or JSON) within the limits above; ``what`` names it in errors.
    mapping: the document must be a mapping (a config file), not empty or a scalar.

    Raises ``UserError`` for a limit, a duplicate key or (``mapping``) another kind of
    document, and ``yaml.YAMLError`` for invalid syntax.
    """
    if len(text.encode("utf-8", "surrogateescape")) > MAX_BYTES:
        raise UserError(f"{what} is larger than {MAX_BYTES} bytes; allowed: a config of at most "
                        f"{MAX_BYTES} bytes")
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if mapping:
                _check_document(node, what)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
        _check_expanded_size(data)
    except _Duplicate as e:
        where = f"{what} line {e.line}" if "\n" in text.strip() or mapping else what
        first = "earlier on that line" if e.first == e.line else f"first on line {e.first}"
        raise UserError(f"{where}: key {show(e.key)} is given twice ({first}); allowed: each "
                        "key once in a mapping") from None
    except _TooBig as e:
        raise UserError(f"{what} is too large: {e} (an alias-expansion bomb?); allowed: at most "
                        f"{MAX_ALIASES} aliases and {MAX_NODES} values") from None
    except RecursionError:
        raise UserError(f"{what} is nested too deeply; allowed: a plain mapping of sections") from None
    return data
