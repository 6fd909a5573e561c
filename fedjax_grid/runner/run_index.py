"""The runs stored under a folder, one summary row each (for the runs panel and the CLI).

A run folder is any folder holding the ``config.json`` a run writes beside its
records (``runs/<name>/<YYYYmmdd-HHMMSS>``, ``--out DIR``, a notebook's
``OUT/<scenario>``). ``find_runs(root)`` lists them (nested folders too, up to
``MAX_DEPTH`` below ``root``; ``dask`` scratch folders and checkpoints are skipped),
``run_summary(folder)`` reads one without touching its lock or its checkpoint
arrays, and ``runs_table(root)`` is the table of all of them:

    run           folder relative to root ('.' for root itself)
    name          config ``name``
    preset        the preset of that name, '' when the name is not a preset's
    mode          server.mode: sync | async
    model         model name
    status        finished | stopped | running | not started
    rounds        rounds done (async: server updates) / the run's total, e.g. '3/8'
    rounds_done   int; rounds_total: int
    best_accuracy best global test accuracy, a fraction in [0, 1] (NaN: none yet)
    final_accuracy the last evaluated round's (fraction)
    wall_s        wall time of the rounds done, s (``elapsed_s`` of the last round)
    compile_s     compile / warm-up time, s, when the run recorded it (NaN otherwise)
    path          absolute folder

Pure reading: nothing here writes, and a folder that is not a readable run is left
out of the table (``runs_table`` lists those in ``table.attrs['skipped']``).
"""
from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Iterable, Optional

import numpy as np
import pandas as pd

from fedjax_grid.errors import UserError

#: How deep below the root folder run folders are looked for.
MAX_DEPTH = 4
#: Folders never searched: Dask scratch space, checkpoints, TensorBoard logs, caches.
SKIP_DIRS = frozenset({"dask", "checkpoints", "tensorboard", "__pycache__", ".ipynb_checkpoints",
                       "logs"})
COLUMNS = ["run", "name", "preset", "mode", "model", "status", "rounds", "rounds_done",
           "rounds_total", "best_accuracy", "final_accuracy", "wall_s", "compile_s", "path"]
#: Columns of rounds.csv / profile.csv that hold compile or warm-up seconds, when recorded.
COMPILE_COLUMNS = ("compile_s", "warmup_s")


def find_runs(root, max_depth: int = MAX_DEPTH) -> list[pathlib.Path]:
    """Run folders (holding ``config.json``) at or below ``root``, sorted by path."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise UserError(f"runs folder {str(root)!r} does not exist; allowed: a folder of runs "
                        "(e.g. runs/ or a notebook's output folder)")
    found = []
    for here, dirs, files in os.walk(root, followlinks=False):
        depth = len(pathlib.Path(here).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")
                         and d != "latest" and depth < max_depth)
        if "config.json" in files:
            found.append(pathlib.Path(here))
    return sorted(found)


def _read_table(folder: pathlib.Path, name: str) -> Optional[pd.DataFrame]:
    for ext, read in (("parquet", pd.read_parquet), ("csv", pd.read_csv)):
        p = folder / f"{name}.{ext}"
        if p.is_file():
            try:
                return read(p)
            except (OSError, ValueError):
                continue
    return None


def _status(folder: pathlib.Path, done: int, total: int, cut: bool = False,
            unevaluated: bool = False) -> str:
    """finished (all its rounds and the last one evaluated -- ``unevaluated``: a Stop cut
    that evaluation --, whatever holds its folder), running (its lock is held), stopped
    (some rounds, or ``cut``: a round's tasks recorded as stopped) or not started."""
    from fedjax_grid.grid.runlock import RunFolderBusy, RunFolderLock
    if done >= total and not unevaluated:
        return "finished"
    try:
        RunFolderLock(folder).probe()
    except RunFolderBusy:
        return "running"
    except UserError:
        pass
    return "stopped" if done > 0 or cut else "not started"


def compile_seconds(rounds: Optional[pd.DataFrame], profile: Optional[pd.DataFrame]) -> float:
    """Compile / warm-up seconds a run recorded (a ``compile_s`` or ``warmup_s`` column of
    its rounds or profile table, summed), NaN when it recorded none."""
    for table in (rounds, profile):
        if table is None:
            continue
        for col in COMPILE_COLUMNS:
            if col in table.columns:
                values = pd.to_numeric(table[col], errors="coerce")
                if values.notna().any():
                    return float(values.sum())
    return math.nan


def run_summary(folder, root=None) -> dict:
    """One row of ``COLUMNS`` for the run in ``folder``; UserError when it is not readable."""
    from fedjax_grid.experiments import list_presets
    folder = pathlib.Path(folder)
    try:
        cfg = json.loads((folder / "config.json").read_text())
        name, total = str(cfg["name"]), int(cfg["training"]["rounds"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{str(folder)!r} holds no readable config.json; allowed: a folder a "
                        "run wrote") from None
    rounds = _read_table(folder, "rounds")
    done = int(pd.to_numeric(rounds["round"]).max()) if rounds is not None and len(rounds) else 0
    acc = pd.to_numeric(rounds["global_accuracy"], errors="coerce").dropna() \
        if rounds is not None and "global_accuracy" in rounds else pd.Series(dtype=float)
    wall = float(pd.to_numeric(rounds["elapsed_s"]).iloc[-1]) \
        if rounds is not None and len(rounds) else math.nan
    rel = os.path.relpath(folder, root) if root is not None else folder.name
    return {"run": rel, "name": name, "preset": name if name in list_presets() else "",
            "mode": str(cfg.get("server", {}).get("mode", "sync")),
            "model": str(cfg.get("model", {}).get("name", "")),
            "status": _status(folder, done, total, _was_stopped(folder), _unevaluated(rounds)),
            "rounds": f"{done}/{total}",
            "rounds_done": done, "rounds_total": total,
            "best_accuracy": float(acc.max()) if len(acc) else math.nan,
            "final_accuracy": float(acc.iloc[-1]) if len(acc) else math.nan,
            "wall_s": wall, "compile_s": compile_seconds(rounds, _read_table(folder, "profile")),
            "path": str(folder.resolve())}


def _unevaluated(rounds) -> bool:
    """Whether a Stop cut the evaluation of the run's last round (a resume does it)."""
    return rounds is not None and len(rounds) > 0 and "evaluation" in rounds \
        and str(rounds["evaluation"].iloc[-1]) == "stopped"


def _was_stopped(folder: pathlib.Path) -> bool:
    """Whether the run recorded tasks of a round cut by a Stop."""
    tasks = _read_table(folder, "tasks")
    return tasks is not None and "status" in tasks and bool((tasks["status"] == "stopped").any())


def runs_table(root, max_depth: int = MAX_DEPTH) -> pd.DataFrame:
    """``COLUMNS`` for every run found under ``root`` (see the module docstring)."""
    rows, skipped = [], []
    for folder in find_runs(root, max_depth):
        try:
            rows.append(run_summary(folder, root))
        except UserError:
            skipped.append(str(folder))
    table = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("rounds_done", "rounds_total"):
        table[col] = table[col].astype(np.int64)
    table.attrs["skipped"] = skipped
    return table


def load_rounds(paths: Iterable, labels: Optional[Iterable[str]] = None) -> pd.DataFrame:
    """The rounds tables of the run folders ``paths`` with a leading ``run`` column
    (``labels``, default each folder's name relative to their common parent)."""
    return _load(paths, labels, "rounds")


def load_tasks(paths: Iterable, labels: Optional[Iterable[str]] = None) -> pd.DataFrame:
    """The tasks tables of the run folders ``paths`` with a leading ``run`` column."""
    return _load(paths, labels, "tasks")


def _load(paths, labels, which: str) -> pd.DataFrame:
    from fedjax_grid.grid.records import Records, concat_runs
    paths = [pathlib.Path(p) for p in paths]
    if not paths:
        raise UserError("no runs selected; allowed: one or more run folders")
    labels = list(labels) if labels is not None else _labels(paths)
    tables = {}
    for label, p in zip(labels, paths):
        fmt = "parquet" if (p / f"{which}.parquet").is_file() else "csv"
        records = Records.load(p, fmt=fmt)
        tables[label] = records.rounds() if which == "rounds" else records.tasks()
    return concat_runs(tables)


def _labels(paths: list[pathlib.Path]) -> list[str]:
    """Short distinct labels: each path relative to the paths' common parent."""
    if len(paths) == 1:
        return [paths[0].name]
    common = pathlib.Path(os.path.commonpath([str(p.resolve()) for p in paths]))
    return [str(p.resolve().relative_to(common)) or p.name for p in paths]


def finished_text(cfg, rounds, out_dir) -> str:
    """'NAME is finished: 8/8 rounds, final accuracy 99.2 % (best 99.4 %); ...' for a run
    whose checkpoint holds all ``training.rounds`` (resuming it would do nothing)."""
    acc = rounds["global_accuracy"].dropna() if len(rounds) else rounds.get("global_accuracy")
    reached = ""
    if acc is not None and len(acc):
        final, best = float(acc.iloc[-1]), float(acc.max())
        if math.isfinite(final):
            reached = f", final global accuracy {100 * final:.1f} % (best {100 * best:.1f} %)"
    return (f"{cfg.name} is finished: {int(rounds['round'].max()) if len(rounds) else 0}/"
            f"{cfg.training.rounds} rounds{reached}; nothing to resume in {out_dir} -- to "
            f"continue it, raise training.rounds (fedjax-grid run --resume --out {out_dir} "
            f"--set training.rounds={cfg.training.rounds + 10})")
