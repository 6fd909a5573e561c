"""The one table of named random streams: numbers distinct, and every seeded numpy
generator of the package drawn through it (no stream numbered by hand elsewhere)."""
import ast
import pathlib

import numpy as np

from fedjax_grid import streams

PACKAGE = pathlib.Path(streams.__file__).resolve().parent


def test_stream_numbers_are_distinct_and_named_once():
    numbers = list(streams.STREAMS.values())
    assert len(set(numbers)) == len(numbers)
    for name, number in streams.STREAMS.items():
        assert getattr(streams, name.upper()) == number


def test_rng_is_the_documented_seed_sequence():
    a = streams.rng(3, streams.SAMPLING, 5).random(4)
    b = np.random.default_rng([3, 7, 5]).random(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(streams.rng(3, streams.LINK, 5).random(4), a)


def _hand_numbered(path: pathlib.Path) -> list[str]:
    """``default_rng([...])`` calls with a list literal: a stream numbered by hand."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", ""))
                == "default_rng" and node.args and isinstance(node.args[0], (ast.List, ast.Tuple))):
            out.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return out


def test_no_stream_is_numbered_outside_the_table():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) if path.name != "streams.py"
             for hit in _hand_numbered(path)]
    assert not found, "seed lists built by hand (use fedjax_grid.streams.rng):\n" + "\n".join(found)


def test_a_workers_slow_down_is_fixed_by_seed_and_name_and_in_range():
    from fedjax_grid.hazards.faults import worker_speed_factor
    a = [worker_speed_factor(6.7, 0, f"desk{i}") for i in range(20)]
    assert a == [worker_speed_factor(6.7, 0, f"desk{i}") for i in range(20)]
    assert all(1.0 <= x <= 6.7 for x in a) and len(set(a)) == 20
    assert worker_speed_factor(6.7, 1, "desk1") != worker_speed_factor(6.7, 0, "desk1")
    assert worker_speed_factor(1.0, 0, "desk1") == 1.0
