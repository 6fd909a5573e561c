"""Core functions stay short: no function in fedjax_grid/ longer than 60 lines.

A function's length counts from its ``def`` line to its last line, docstring and
comments included (decorators not). Split a longer one into well-named helpers.
"""
import ast
import pathlib


PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "fedjax_grid"
MAX_LINES = 60


def long_functions(root: pathlib.Path = PACKAGE, limit: int = MAX_LINES) -> list[str]:
    """``'path:line name (n lines)'`` of every function or method longer than ``limit``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append(f"{path.relative_to(root.parent)}:{node.lineno} "
                               f"{node.name} ({n} lines)")
    return out


def test_no_function_longer_than_60_lines():
    too_long = long_functions()
    assert not too_long, "split these into helpers:\n" + "\n".join(too_long)


def test_the_measure_counts_def_to_last_line(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    (pkg / "m.py").write_text(f"def ok():\n{body}\n\n\ndef long():\n{body}\n    return 0\n")
    assert long_functions(pkg) == ["pkg/m.py:63 long (61 lines)"]
