"""Grid profiles: what kind of desktops an emulated grid has and how they come and go.

A profile is a YAML file in ``fedjax_grid/experiments/grid_profiles/`` (beside
the experiment presets; ``fedjax-grid presets`` lists them) or any path given
to ``grid up --profile``. Its keys::

    description: one line
    desktops: 3                  # how many desktops `grid up` starts by default
    machines:                    # desktop i is machines[i % len(machines)]
      - {kind: fast, cpu: 1.0, memory: 3GiB, down: 16Mbit, up: 1Mbit}
    schedule:                    # seeded availability schedule, replayed while the grid is up
      seed: 0
      start_after_s: 60          # quiet time after `grid up`
      horizon_s: 3600            # events are drawn for this long
      link_down: {every_s: 600, duration_s: [10, 30]}   # link off for S seconds, then on
      freeze: {every_s: 900, duration_s: [20, 90]}      # processes frozen, then thawed
      kill: {every_s: 1800, duration_s: [30, 120]}      # worker killed, rejoins after S seconds

Units: ``cpu`` in cores (0.5 = half of one core, a CFS quota); ``memory`` in
bytes or with KiB/MiB/GiB (KB/MB/GB: powers of 1000); rates in bit/s or with
kbit/Mbit/Gbit (``down``: what the desktop receives, ``up``: what it sends).
A hazard's ``every_s`` is the mean time between its starts on one desktop
(exponential gaps), ``duration_s`` the range its length is drawn from (uniform).
"""
from __future__ import annotations

import importlib.resources
import pathlib
import re
from typing import Optional

import pydantic

from fedjax_grid.errors import UserError, show

PROFILES_PACKAGE = "fedjax_grid.experiments.grid_profiles"
DEFAULT_PROFILE = "home"
_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z/]*)\s*$")
_RATE = {"": 1, "bit": 1, "bps": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
_BYTES = {"": 1, "b": 1, "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "kb": 1e3, "mb": 1e6,
          "gb": 1e9, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30}
MIN_RATE, MAX_RATE = 8e3, 30e9
MIN_MEMORY = 64 * 2 ** 20


def _amount(value, units: dict, what: str, example: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _UNIT.match(str(value)) if isinstance(value, str) else None
    unit = m.group(2).lower().removesuffix("/s") if m else None
    if m is None or unit not in units:
        raise ValueError(f"{what} like {example} is required")
    return float(m.group(1)) * units[unit]


def parse_rate(value) -> float:
    """Bits per second from 16000000, '16Mbit', '16 Mbit/s', '500kbit'."""
    bps = _amount(value, _RATE, "a rate", "16Mbit, 500kbit or 1Gbit")
    if not MIN_RATE <= bps <= MAX_RATE:
        raise ValueError("a rate in [8kbit, 30Gbit] is required")
    return bps


def parse_bytes(value) -> int:
    """Bytes from 2147483648, '2GiB', '512MiB', '2GB'."""
    n = _amount(value, _BYTES, "a memory size", "2GiB or 512MiB")
    if n < MIN_MEMORY:
        raise ValueError("a memory size of at least 64MiB is required")
    return int(n)


def format_rate(bps: float) -> str:
    for unit, scale in (("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3)):
        if bps >= scale:
            return f"{bps / scale:g}{unit}"
    return f"{bps:g}bit"


def format_bytes(n: int) -> str:
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n}B"


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class Machine(_Strict):
    """A kind of desktop: CPU share (cores), memory limit (bytes), link rates (bit/s)."""
    kind: str = pydantic.Field("desktop", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    cpu: float = pydantic.Field(ge=0.01, le=256)
    memory: int
    down: float
    up: float

    _memory = pydantic.field_validator("memory", mode="before")(lambda v: parse_bytes(v))
    _down = pydantic.field_validator("down", mode="before")(lambda v: parse_rate(v))
    _up = pydantic.field_validator("up", mode="before")(lambda v: parse_rate(v))


class Hazard(_Strict):
    """One kind of availability event: mean gap between starts and its length range (s)."""
    every_s: float = pydantic.Field(gt=0, le=1e7)
    duration_s: tuple[float, float]

    @pydantic.field_validator("duration_s")
    @classmethod
    def _ordered(cls, v):
        if not 0 < v[0] <= v[1] <= 1e6:
            raise ValueError("[low, high] seconds with 0 < low <= high is required")
        return v


class Schedule(_Strict):
    seed: int = pydantic.Field(0, ge=0, le=2 ** 31 - 1)
    start_after_s: float = pydantic.Field(60.0, ge=0, le=1e6)
    horizon_s: float = pydantic.Field(3600.0, gt=0, le=1e7)
    link_down: Optional[Hazard] = None
    freeze: Optional[Hazard] = None
    kill: Optional[Hazard] = None

    @property
    def empty(self) -> bool:
        return self.link_down is None and self.freeze is None and self.kill is None


class Profile(_Strict):
    name: str
    description: str = ""
    desktops: int = pydantic.Field(3, ge=1, le=200)
    machines: list[Machine] = pydantic.Field(min_length=1, max_length=200)
    schedule: Schedule = Schedule()

    def machine(self, i: int) -> Machine:
        """Desktop i's machine (the list repeats)."""
        return self.machines[i % len(self.machines)]


def _error(e: pydantic.ValidationError, where: str) -> UserError:
    """The first validation error as one line naming the key and the bad value."""
    first = e.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return UserError(f"{where}: unknown key {show(loc)}")
    if first["type"] == "missing":
        return UserError(f"{where}: {loc} is required")
    msg = first["msg"].removeprefix("Value error, ").replace("Input should be", "it should be")
    return UserError(f"{where}: {loc}={show(first.get('input'))} is invalid: {msg}")


def from_dict(data, name: str, where: str = "") -> Profile:
    """A validated Profile from parsed YAML (``where`` names the source in errors)."""
    where = where or f"grid profile {name!r}"
    if not isinstance(data, dict):
        raise UserError(f"{where}: a mapping with machines: [...] is required, got {show(data)}")
    try:
        return Profile.model_validate({"name": name, **data})
    except pydantic.ValidationError as e:
        raise _error(e, where) from None


def _builtin_dir():
    return importlib.resources.files(PROFILES_PACKAGE)


def list_profiles() -> dict[str, str]:
    """Built-in profile name -> its description."""
    out = {}
    for entry in sorted(_builtin_dir().iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            out[entry.name[:-5]] = load_profile(entry.name[:-5]).description
    return out


def load_profile(name_or_path: str) -> Profile:
    """A built-in profile by name (office, home, laptops) or a YAML file by path."""
    from fedjax_grid.experiments.safe_yaml import load_bounded
    builtin = _builtin_dir() / f"{name_or_path}.yaml"
    if re.match(r"^[A-Za-z0-9_-]+$", name_or_path) and builtin.is_file():
        text, name, where = builtin.read_text(), name_or_path, f"grid profile {name_or_path!r}"
    else:
        path = pathlib.Path(name_or_path)
        if not path.is_file():
            raise UserError(f"--profile {show(name_or_path)} is neither a built-in grid profile "
                            f"nor a file; allowed: {', '.join(_builtin_names())} or a YAML path")
        text, name, where = path.read_text(errors="replace"), path.stem, f"grid profile {str(path)!r}"
    import yaml
    try:
        data = load_bounded(text, where)
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise UserError(f"{where} is not valid YAML"
                        f"{f' (line {line + 1})' if line is not None else ''}") from None
    return from_dict(data, name, where)


def _builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in _builtin_dir().iterdir() if p.name.endswith(".yaml"))
