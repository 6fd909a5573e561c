"""Bounded YAML/JSON parsing for config files and ``--set`` values.

``yaml.safe_load`` keeps anchors and aliases as shared references, so a small
alias-expansion bomb ("billion laughs") loads quickly and then hangs whatever walks it
(``dataclasses.asdict``, ``json.dumps``). ``load_bounded`` refuses, with a one-line
``UserError``, text over ``MAX_BYTES`` bytes, more than ``MAX_ALIASES`` aliases, a
document that expands to more than ``MAX_NODES`` values (aliases counted as often as
they are used), and nesting deeper than Python's recursion allows.
"""
from __future__ import annotations

import yaml

from fedjax_grid.errors import UserError

#: Largest config text accepted (bytes).
MAX_BYTES = 1_000_000
#: Most aliases (``*name``) one document may use.
MAX_ALIASES = 100
#: Most values (mapping keys and values, list items, scalars) after expanding aliases.
MAX_NODES = 100_000


class _Loader(yaml.SafeLoader):
    """SafeLoader that counts alias uses while composing."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _TooBig(f"more than {MAX_ALIASES} YAML aliases")
        return super().compose_node(parent, index)


class _TooBig(Exception):
    pass


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


def load_bounded(text: str, what: str):
    """Parse ``text`` (YAML or JSON) within the limits above; ``what`` names it in errors.

    Raises ``UserError`` for a limit and ``yaml.YAMLError`` for invalid syntax.
    """
    if len(text.encode("utf-8", "surrogateescape")) > MAX_BYTES:
        raise UserError(f"{what} is larger than {MAX_BYTES} bytes; allowed: a config of at most "
                        f"{MAX_BYTES} bytes")
    try:
        loader = _Loader(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
        _check_expanded_size(data)
    except _TooBig as e:
        raise UserError(f"{what} is too large: {e} (an alias-expansion bomb?); allowed: at most "
                        f"{MAX_ALIASES} aliases and {MAX_NODES} values") from None
    except RecursionError:
        raise UserError(f"{what} is nested too deeply; allowed: a plain mapping of sections") from None
    return data
