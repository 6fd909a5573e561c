"""Output files a benchmark writes after its runs (``--json``, ``--csv``, ``--png``): their
folders are made before anything runs, so a path that cannot be written is refused in one
line instead of costing the measurements (an 11-minute ``vs_flower`` run once lost its raw
JSON to a missing ``benchmarks/out``)."""
from __future__ import annotations

import pathlib
from typing import Optional


def output_error(**paths: Optional[str]) -> Optional[str]:
    """Make the folder of every given path (``--name=path``; None: not asked for). None when
    all can be written there, else the one-line error for the first that cannot."""
    for flag, path in paths.items():
        if not path:
            continue
        try:
            pathlib.Path(path).resolve().parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return (f"--{flag.replace('_', '-')} {path!r}: its folder cannot be made "
                    f"({e.strerror}); a writable path is required")
    return None
