"""Tidy run records: one row per task attempt, one row per round (pandas).

Columns and dtypes are fixed (docs/ARCHITECTURE.md, "Records"), also for empty
tables, so plots and comparisons never depend on what happened in a run:

tasks: ``round, client, worker, attempt, num_samples, local_loss,
local_accuracy, start_s, end_s, duration_s, status, reason, bytes_in,
bytes_out, speed_factor, worker_name`` -- times in seconds since the run started;
status one of ``ok | late | failed | rejected | offline | dropped | stopped``; bytes as transferred to
(in) / from (out) the worker; ``worker`` is the worker's address (the key),
``worker_name`` its ``dask worker --name`` (<NA> when it has none).

Rounds are numbered from 1 in every table: row ``round = k`` is the k-th round,
after which k rounds are done (the checkpoint of that state is ``ckpt-00000k.npz``).

rounds: ``round, global_loss, global_accuracy, round_time_s, elapsed_s,
clients_sampled, clients_ok, clients_late, clients_failed, clients_rejected,
clients_offline, bytes_sent, bytes_received, quorum, logit_spread,
logit_spread_train, bn_collapse`` (``clients_offline`` and ``quorum`` -- whether
enough clients reported for the server step -- extend the architecture's list;
the last three are the evaluation's collapse check: the spread of the global
model's logits across the first test batch in evaluation and in training mode,
and whether evaluation collapsed, see ``training.bn_stats``).

Missing values are ``NaN`` (floats) or ``<NA>`` (nullable ``Int64``,
``boolean`` and ``string`` columns; an empty string is stored as ``<NA>`` so
CSV files read back identically); ``round`` and ``client`` / ``attempt`` are plain ``int64``.
``Records`` keeps rows as small dicts (cheap to append from the round loop), and
round-trips through JSON (for checkpoints: :meth:`to_json_state` /
:meth:`from_json_state`) and through CSV/Parquet files (:meth:`save` /
:meth:`load`). Several runs are compared with :func:`concat_runs`.
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from fedjax_grid.atomic_write import write_if_changed
from fedjax_grid.errors import UserError

#: 'dropped': an asynchronous delta staler than ``server.max_staleness``, or a task in
#: flight when the coordinator stopped (not folded). 'stopped': a task of the round in
#: progress when Stop was pressed: cancelled in flight, or its update not applied (the
#: round is run again on resume; the reason says what became of the task).
TASK_STATUSES = ('ok', 'late', 'failed', 'rejected', 'offline', 'dropped', 'stopped')

TASK_COLUMNS: dict[str, str] = {
    'round': 'int64', 'client': 'int64', 'worker': 'string', 'attempt': 'int64',
    'num_samples': 'Int64', 'local_loss': 'float64', 'local_accuracy': 'float64',
    'start_s': 'float64', 'end_s': 'float64', 'duration_s': 'float64',
    'status': 'string', 'reason': 'string', 'bytes_in': 'Int64', 'bytes_out': 'Int64',
    'speed_factor': 'float64', 'worker_name': 'string',
    # the global version the task trained from and its staleness when it arrived
    # (synchronous rounds: version = round - 1, staleness 0)
    'version': 'Int64', 'staleness': 'Int64',
    # the upload codec (server.codec, shorthand) and the simulated link time slept (faults.link)
    'codec': 'string', 'transfer_s': 'float64',
    # seconds this task spent compiling (JAX tracing, lowering, XLA compile or a
    # persistent-cache read) on its worker: 0 once the worker has compiled the model
    'compile_s': 'float64',
}
#: Columns added after the first release: tables written without them read back with <NA>.
LATER_COLUMNS = ('worker_name', 'version', 'staleness', 'clients_dropped', 'codec', 'transfer_s',
                 'compile_s', 'clients_stopped', 'evaluation')
#: The rounds table's ``evaluation``: the global model was evaluated in the round
#: ('done'), on a resume after a Stop had cut it ('on resume'), not in this round
#: (``training.eval_every``: 'not due'), or Stop was pressed before or during it
#: ('stopped': no accuracy yet; a resume evaluates that state and writes 'on resume').
EVALUATIONS = ('done', 'on resume', 'not due', 'stopped')
ROUND_COLUMNS: dict[str, str] = {
    'round': 'int64', 'global_loss': 'float64', 'global_accuracy': 'float64',
    'round_time_s': 'float64', 'elapsed_s': 'float64', 'clients_sampled': 'Int64',
    'clients_ok': 'Int64', 'clients_late': 'Int64', 'clients_failed': 'Int64',
    'clients_rejected': 'Int64', 'clients_offline': 'Int64', 'clients_dropped': 'Int64',
    'clients_stopped': 'Int64', 'bytes_sent': 'Int64',
    'bytes_received': 'Int64', 'quorum': 'boolean',
    'logit_spread': 'float64', 'logit_spread_train': 'float64', 'bn_collapse': 'boolean',
    # compilation the round waited for (s): the coordinator's own plus the longest of its
    # tasks'; kept out of round_time_s (the round's wall time is round_time_s + compile_s)
    'compile_s': 'float64',
    # whether the global model was evaluated (EVALUATIONS)
    'evaluation': 'string',
}
#: One row per worker the run has seen (``grid.health.WorkerLedger``): host reliability.
WORKER_COLUMNS: dict[str, str] = {
    'address': 'string', 'name': 'string', 'first_seen_s': 'float64', 'tasks_ok': 'Int64',
    'tasks_failed': 'Int64', 'tasks_late': 'Int64', 'quarantined': 'boolean', 'why': 'string',
}
_REQUIRED = {'tasks': ('round', 'client', 'status'), 'rounds': ('round',), 'workers': ('address',)}
_DEFAULTS = {'tasks': {'attempt': 0}, 'rounds': {}, 'workers': {}}
JSON_STATE_VERSION = 1


def _is_missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _coerce(table: str, column: str, dtype: str, value):
    """One cell to a JSON-friendly Python value (None for missing); UserError if bad."""
    if _is_missing(value) or (dtype == 'string' and value == ''):
        if dtype == 'int64':
            raise UserError(f"{table} column {column!r} is missing; allowed: an integer")
        return None
    try:
        if dtype in ('int64', 'Int64'):
            if isinstance(value, (bool, np.bool_)):
                raise ValueError
            if isinstance(value, (int, np.integer)):
                return int(value)
            if float(value) != int(value):
                raise ValueError
            return int(value)
        if dtype == 'float64':
            return float(value)
        if dtype == 'boolean':
            if isinstance(value, (bool, np.bool_)) or value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.lower() in ('true', 'false'):
                return value.lower() == 'true'
            raise ValueError
        return str(value)
    except (TypeError, ValueError, OverflowError):
        kind = {'int64': 'an integer', 'Int64': 'an integer', 'float64': 'a number',
                'boolean': 'true or false'}.get(dtype, 'a string')
        raise UserError(f"{table} column {column!r} has value {value!r}; allowed: {kind}") from None


def _normalise(table: str, columns: dict[str, str], row: Mapping) -> dict:
    if not isinstance(row, Mapping):
        raise UserError(f"{table} row {row!r} is not a dict; allowed: a dict of column values")
    unknown = sorted(set(row) - set(columns))
    if unknown:
        raise UserError(f"{table} row has unknown column(s) {', '.join(map(str, unknown))}; "
                        f"allowed: {', '.join(columns)}")
    full = {**_DEFAULTS[table], **row}
    for c in _REQUIRED[table]:
        if _is_missing(full.get(c)):
            raise UserError(f"{table} row lacks {c!r}; allowed: rows with {', '.join(_REQUIRED[table])}")
    out = {c: _coerce(table, c, d, full.get(c)) for c, d in columns.items()}
    if table == 'tasks':
        if out['status'] not in TASK_STATUSES:
            raise UserError(f"task status {out['status']!r} is not known; allowed: {', '.join(TASK_STATUSES)}")
        if out['duration_s'] is None and out['start_s'] is not None and out['end_s'] is not None:
            out['duration_s'] = out['end_s'] - out['start_s']
    if table == 'rounds' and out['evaluation'] is not None and out['evaluation'] not in EVALUATIONS:
        raise UserError(f"rounds evaluation {out['evaluation']!r} is not known; allowed: "
                        f"{', '.join(EVALUATIONS)}")
    return out


def _frame(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    data = {}
    for c, dtype in columns.items():
        values = [r[c] for r in rows]
        if dtype == 'int64':
            data[c] = pd.Series(np.asarray(values, dtype=np.int64), dtype='int64')
        elif dtype == 'float64':
            data[c] = pd.Series(np.asarray([np.nan if v is None else v for v in values],
                                           dtype=np.float64), dtype='float64')
        else:
            data[c] = pd.Series(pd.array(values, dtype=dtype))
    return pd.DataFrame(data, columns=list(columns))


def conform(df: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """``df`` with exactly ``columns`` (in order) and their dtypes (e.g. after read_csv)."""
    missing = [c for c in columns if c not in df.columns and c not in LATER_COLUMNS]
    if missing:
        raise UserError(f"records table lacks column(s) {', '.join(missing)}; allowed: {', '.join(columns)}")
    return pd.DataFrame({c: (df[c] if c in df.columns else pd.Series([None] * len(df), index=df.index,
                                                                         dtype=object)).astype(d)
                         for c, d in columns.items()}, columns=list(columns))


class Records:
    """Append-only task and round tables of one run."""

    def __init__(self, tasks: Iterable[Mapping] = (), rounds: Iterable[Mapping] = (),
                 workers: Iterable[Mapping] = ()):
        self._tasks: list[dict] = []
        self._rounds: list[dict] = []
        self._workers: list[dict] = []
        self._written: dict = {}   # file -> digest of what save() last wrote there
        for r in tasks:
            self.add_task(r)
        for r in rounds:
            self.add_round(r)
        self.set_workers(workers)

    def set_workers(self, rows: Iterable[Mapping]) -> None:
        """Replace the workers table (a snapshot of ``WorkerLedger.table_rows()``)."""
        self._workers = [_normalise('workers', WORKER_COLUMNS, r) for r in rows]

    def worker_rows(self) -> list[dict]:
        return [dict(r) for r in self._workers]

    # -- appending
    def add_task(self, row: Mapping) -> dict:
        """Append one task attempt (dict of TASK_COLUMNS; round, client, status required)."""
        out = _normalise('tasks', TASK_COLUMNS, row)
        self._tasks.append(out)
        return out

    def add_round(self, row: Mapping) -> dict:
        """Append one round (dict of ROUND_COLUMNS; round required)."""
        out = _normalise('rounds', ROUND_COLUMNS, row)
        self._rounds.append(out)
        return out

    def round_row(self, round_: int):
        """The rounds row of round ``round_`` (from 1) as a dict, or None."""
        found = [r for r in self._rounds if r['round'] == round_]
        return dict(found[-1]) if found else None

    def update_round(self, round_: int, **values) -> dict:
        """Set ``values`` (ROUND_COLUMNS) in the row of round ``round_`` (a stopped
        evaluation done on resume fills in its metrics); KeyError if there is none."""
        for i in range(len(self._rounds) - 1, -1, -1):
            if self._rounds[i]['round'] == round_:
                self._rounds[i] = _normalise('rounds', ROUND_COLUMNS, {**self._rounds[i], **values})
                return dict(self._rounds[i])
        raise KeyError(f"no rounds row for round {round_}")

    def task_counts(self, round_: int) -> dict:
        """``clients_<status>`` for each of ``TASK_STATUSES``: how many distinct clients
        have a task row of that status in round ``round_`` (from 1). A client counts once
        per status however many of its attempts had it (two failed attempts: one
        client failed; a failed attempt, then an ok one: one failed and one ok)."""
        seen: dict[str, set] = {s: set() for s in TASK_STATUSES}
        for r in self._tasks:
            if r['round'] == round_:
                seen[r['status']].add(r['client'])
        return {f'clients_{s}': len(clients) for s, clients in seen.items()}

    @property
    def num_tasks(self) -> int:
        return len(self._tasks)

    @property
    def num_rounds(self) -> int:
        return len(self._rounds)

    # -- tables
    def tasks(self) -> pd.DataFrame:
        return _frame(self._tasks, TASK_COLUMNS)

    def rounds(self) -> pd.DataFrame:
        return _frame(self._rounds, ROUND_COLUMNS)

    def workers(self) -> pd.DataFrame:
        return _frame(self._workers, WORKER_COLUMNS)

    # -- JSON (checkpoints)
    def to_json_state(self) -> dict:
        """JSON-serialisable state: rows as lists in column order, missing -> null."""
        return {'version': JSON_STATE_VERSION,
                'task_columns': list(TASK_COLUMNS), 'round_columns': list(ROUND_COLUMNS),
                'tasks': [[r[c] for c in TASK_COLUMNS] for r in self._tasks],
                'rounds': [[r[c] for c in ROUND_COLUMNS] for r in self._rounds],
                'worker_columns': list(WORKER_COLUMNS),
                'workers': [[r[c] for c in WORKER_COLUMNS] for r in self._workers]}

    @classmethod
    def from_json_state(cls, state: Mapping) -> 'Records':
        try:
            if state.get('version') != JSON_STATE_VERSION:
                raise UserError(f"records state version {state.get('version')!r} is not supported; "
                                f"allowed: {JSON_STATE_VERSION}")
            tasks = [dict(zip(state['task_columns'], row)) for row in state['tasks']]
            rounds = [dict(zip(state['round_columns'], row)) for row in state['rounds']]
            workers = [dict(zip(state['worker_columns'], row)) for row in state.get('workers', [])]
        except (AttributeError, KeyError, TypeError):
            raise UserError("records state is malformed; allowed: the dict from Records.to_json_state()") from None
        return cls(tasks, rounds, workers)

    # -- files
    def save(self, out_dir: os.PathLike | str) -> dict[str, Path]:
        """Write tasks, rounds and workers as .csv and .parquet (each atomically)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, df in (('tasks', self.tasks()), ('rounds', self.rounds()),
                         ('workers', self.workers())):
            for ext in ('csv', 'parquet'):
                p = out / f'{name}.{ext}'
                if ext == 'csv':
                    data = df.to_csv(index=False).encode('utf-8')
                else:
                    buf = io.BytesIO()
                    df.to_parquet(buf, index=False)
                    data = buf.getvalue()
                # a table that did not change since this Records wrote it is not rewritten
                write_if_changed(p, data, self._written)
                paths[f'{name}.{ext}'] = p
        return paths

    @classmethod
    def load(cls, out_dir: os.PathLike | str, fmt: str = 'parquet') -> 'Records':
        """Read tables written by :meth:`save` (``fmt`` 'parquet' or 'csv')."""
        if fmt not in ('parquet', 'csv'):
            raise UserError(f"records format {fmt!r} is not supported; allowed: parquet, csv")
        out = Path(out_dir)
        frames = {'workers': _frame([], WORKER_COLUMNS)}
        for name, cols in (('tasks', TASK_COLUMNS), ('rounds', ROUND_COLUMNS),
                           ('workers', WORKER_COLUMNS)):
            p = out / f'{name}.{fmt}'
            if name == 'workers' and not p.is_file():
                continue  # written by runs since the workers table exists
            if not p.is_file():
                raise UserError(f"records file {p} does not exist; allowed: a directory written by Records.save")
            df = pd.read_parquet(p) if fmt == 'parquet' else \
                pd.read_csv(p, dtype={c: d for c, d in cols.items()}, keep_default_na=True)
            frames[name] = conform(df, cols)
        return cls(_rows(frames['tasks']), _rows(frames['rounds']), _rows(frames['workers']))


def _rows(df: pd.DataFrame) -> list[dict]:
    return [{c: (None if _is_missing(v) else v) for c, v in row.items()}
            for row in df.astype(object).to_dict('records')]


def concat_runs(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Concatenate tables of several runs, adding a leading ``run`` column (string)."""
    frames = []
    for run, df in tables.items():
        df = df.copy()
        df.insert(0, 'run', pd.Series([str(run)] * len(df), dtype='string', index=df.index))
        frames.append(df)
    if not frames:
        raise UserError("no runs to concatenate; allowed: a non-empty mapping of run name to table")
    return pd.concat(frames, ignore_index=True)


def accuracy_text(row: Mapping) -> str:
    """A rounds row's global accuracy for people: '99.2 %', or why there is none
    ('not evaluated this round', 'evaluation stopped: measured on resume')."""
    acc = row.get('global_accuracy')
    if not _is_missing(acc):
        return f"{100 * float(acc):.1f} %"
    if row.get('evaluation') == 'stopped':
        return "evaluation stopped: measured on resume"
    return "not evaluated this round"


def round_warnings(row: Mapping) -> list[str]:
    """One-line warnings about a row of the rounds table (for the CLI and the widgets).

    Today: the evaluation's collapse check (``bn_collapse``: evaluation-mode logits of
    the global model hardly vary across the test batch while training-mode logits do,
    so its accuracy says nothing about what the model learned).
    """
    out = []
    if row.get('bn_collapse') is True:
        out.append(f"round {int(row['round'])}: evaluation-mode logits collapsed "
                   f"(spread {row.get('logit_spread', float('nan')):.2g} vs "
                   f"{row.get('logit_spread_train', float('nan')):.2g} in training mode): the "
                   "BatchNorm statistics do not fit the model, so this accuracy is not "
                   "meaningful; use server.bn_mode=recalibrate")
    return out
