"""No module of fedjax_grid reads another module's (or object's) private names.

The rule, checked on the AST of every file under fedjax_grid/:

1. Attribute access ``x._name`` (one leading underscore, not a ``__dunder__``) is allowed
   only when ``x`` is ``self`` or ``cls``, or when ``_name`` is defined in the same module
   (assigned as ``anything._name = ...``, a module-level or class-level ``_name``, a
   ``def``/``class _name``): a module may read its own private members, e.g. on
   another instance of its own class. NamedTuple's public API (``_replace``, ``_asdict``,
   ``_fields``, ``_make``, ``_field_defaults``) is allowed anywhere.
2. ``from m import _name`` and ``import m._sub`` / ``from m._sub import ...`` are allowed
   only when the private module or name belongs to the importer's own package (a
   package-private module such as ``plots/_base.py`` used by its siblings); a private
   *name* of another module is never imported.
3. Third-party private APIs without a public equivalent are listed in ``ALLOWED`` with
   the reason; each entry must still be in use (so the list cannot rot).
"""
from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "fedjax_grid"

NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}

#: (file relative to fedjax_grid/, private name) -> why it is needed
ALLOWED = {
    ("grid/dispatch.py", "_scatter"): "distributed.Client's coroutine scatter: the bounded, "
                                      "concurrent broadcast awaits one per worker in one loop",
    ("grid/health.py", "_run"): "distributed.Client's coroutine run: a time-bounded call per "
                                "worker inside one event loop (Client.run has no per-worker timeout)",
    ("grid/dispatch.py", "_run_on_scheduler"): "distributed.Client's coroutine "
                                               "run_on_scheduler: the scheduler's view of the "
                                               "workers, awaited inside the broadcast's loop",
    ("grid/fetch.py", "_gather"): "distributed.Client's coroutine gather: one result transfer "
                                  "polled on the client's loop while its worker heartbeats",
    ("grid/plugin.py", "_src"): "jax._src.xla_bridge: the backend's initialisation state, "
                                "not exposed publicly",
    ("data/store.py", "_active"): "tensorflow_datasets' tqdm switch (disable its progress "
                                  "bars while preparing)",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _defined_here(tree: ast.AST) -> set[str]:
    """Names this module defines: defs, classes, assigned names and attributes."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            out.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
    return out


def _import_violations(node, module: str, is_package: bool) -> list[tuple[str, str]]:
    """(private name, text) of the private imports in ``node`` that break rule 2."""
    own_package = module if is_package else module.rpartition(".")[0]
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative import: resolve against this package
            base = ".".join(own_package.split(".")[:len(own_package.split(".")) - node.level + 1]
                            + ([base] if base else []))
        targets = [f"{base}.{alias.name}" for alias in node.names]
    out = []
    for target in targets:
        parts = target.split(".")
        for i, part in enumerate(parts):
            if _private(part) and ".".join(parts[:i]) != own_package:
                out.append((part, f"imports {target}"))
                break
    return out


def violations(src: str, module: str, is_package: bool = False, rel: str = "") -> list[tuple[str, str]]:
    """(private name, 'file:line: what') of every break of the rule in the source ``src``
    of ``module`` (``rel``: its file, for messages and ``ALLOWED``)."""
    tree = ast.parse(src)
    own = _defined_here(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for name, text in _import_violations(node, module, is_package):
                out.append((name, f"{rel}:{node.lineno}: {text}"))
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr in own or node.attr in NAMEDTUPLE_API:
                continue
            out.append((node.attr, f"{rel}:{node.lineno}: {ast.unparse(node)[:60]}"))
    return [(name, text) for name, text in out if (rel, name) not in ALLOWED]


def test_no_module_reads_another_modules_private_names():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += [text for _, text in violations(path.read_text(), _module_name(path),
                                                 path.name == "__init__.py",
                                                 path.relative_to(PACKAGE).as_posix())]
    assert not found, "private names read across modules:\n" + "\n".join(found)


@pytest.mark.parametrize("entry", sorted(ALLOWED))
def test_each_allowed_private_use_is_still_there(entry):
    rel, name = entry
    assert f".{name}" in (PACKAGE / rel).read_text(), \
        f"{rel} no longer uses {name}: drop it from ALLOWED"


PROBE = """\
from fedjax_grid.grid.dispatch import _WORKER_ADDR
from fedjax_grid.plots import _base
from fedjax_grid.probe import _helpers
import fedjax_grid.probe._own
class A:
    def __init__(self):
        self._mine = 1
    def f(self, other, run):
        return self._x, other._mine, run._task_spec, run.state._replace(round=1), cls_._y
"""


def test_the_rule_catches_what_it_should():
    """Reads of another module's or object's privates are found; the module's own
    privates, self/cls, NamedTuple's API and its package's private modules are not."""
    found = [name for name, _ in violations(PROBE, "fedjax_grid.probe.mod")]
    assert sorted(found) == ["_WORKER_ADDR", "_base", "_task_spec", "_y"]
