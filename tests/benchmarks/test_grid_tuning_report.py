"""benchmarks/grid_tuning.py's summary: auto against the best fixed setting, the default
counted among the fixed ones; a run that missed the target counts as its wall time."""
import importlib.util
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]


def _report():
    spec = importlib.util.spec_from_file_location("grid_tuning", REPO / "benchmarks" /
                                                  "grid_tuning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.report


def _rows(times: dict) -> list:
    return [{"profile": "home", "setting": name, "seed": seed, "time_to_target_s": t,
             "wall_s": 60.0} for name, ts in times.items() for seed, t in enumerate(ts)]


def test_the_default_counts_as_a_fixed_setting():
    lines = _report()(_rows({"default": [29, 39, 32], "d30-o1": [45, 50, 47],
                             "auto": [32, 38, 32]}))
    assert "  auto / best fixed (default): 1.00 (goal <= 1.10)" in lines
    assert "  default / auto: 1.00 (goal >= 1.5)" in lines


def test_a_missed_target_counts_as_the_wall_time_and_is_marked():
    lines = _report()(_rows({"default": [40, float("nan"), 44], "d30-o1": [20, 22, 21],
                             "auto": [30, 33, 31]}))
    assert "  default           44*" in lines
    assert "  auto / best fixed (d30-o1): 1.48 (goal <= 1.10)" in lines
