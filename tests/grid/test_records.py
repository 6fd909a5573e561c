"""Records: fixed columns/dtypes, JSON and CSV/Parquet round trips, bad rows."""
import json

import numpy as np
import pandas as pd
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.grid.records import (ROUND_COLUMNS, TASK_COLUMNS, WORKER_COLUMNS, Records,
                                      concat_runs)


def _records():
    rec = Records()
    rec.add_task({'round': 1, 'client': 0, 'worker': 'tcp://127.0.0.1:4001', 'num_samples': 120,
                  'local_loss': 0.5, 'local_accuracy': 0.8, 'start_s': 1.0, 'end_s': 3.5,
                  'status': 'ok', 'bytes_in': 2 ** 40 + 1, 'bytes_out': 1000, 'speed_factor': 1.0})
    rec.add_task({'round': 1, 'client': 3, 'worker': 'tcp://127.0.0.1:4002', 'attempt': 1,
                  'status': 'failed', 'reason': 'worker lost: KilledWorker', 'start_s': 1.0})
    rec.add_task({'round': 1, 'client': 4, 'status': 'rejected', 'reason': 'non-finite values, 1 NaN',
                  'local_loss': float('nan'), 'num_samples': np.int64(50)})
    rec.add_round({'round': 1, 'global_loss': 0.7, 'global_accuracy': 0.75, 'round_time_s': 4.0,
                   'elapsed_s': 4.2, 'clients_sampled': 3, **rec.task_counts(1),
                   'bytes_sent': 3000, 'bytes_received': 1000, 'quorum': True})
    rec.add_task({'round': 2, 'client': 5, 'status': 'offline', 'worker': ''})
    rec.add_round({'round': 2, 'quorum': False, **rec.task_counts(2)})
    rec.set_workers([
        {'address': 'tcp://127.0.0.1:4001', 'name': 'desktop-0', 'first_seen_s': 0.5,
         'tasks_ok': 1, 'tasks_failed': 0, 'tasks_late': 0, 'quarantined': False, 'why': ''},
        {'address': 'tcp://127.0.0.1:4002', 'name': 'desktop-1', 'first_seen_s': 0.6,
         'tasks_ok': 0, 'tasks_failed': 3, 'tasks_late': 0, 'quarantined': True,
         'why': '3 tasks failed in a row'}])
    return rec


def test_fixed_columns_and_dtypes_even_when_empty():
    for df, cols in ((Records().tasks(), TASK_COLUMNS), (Records().rounds(), ROUND_COLUMNS),
                     (_records().tasks(), TASK_COLUMNS), (_records().rounds(), ROUND_COLUMNS)):
        assert list(df.columns) == list(cols)
        assert {c: str(t) for c, t in df.dtypes.items()} == cols


def test_values_defaults_and_counts():
    rec = _records()
    t = rec.tasks()
    assert t['duration_s'].tolist()[0] == 2.5                     # derived from start/end
    assert t['attempt'].tolist() == [0, 1, 0, 0]                   # default attempt 0
    assert t['bytes_in'][0] == 2 ** 40 + 1                         # exact, no float rounding
    assert pd.isna(t['num_samples'][1]) and t['num_samples'][2] == 50
    assert np.isnan(t['local_loss'][2]) and pd.isna(t['worker'][2])
    r = rec.rounds()
    assert r.loc[0, ['clients_ok', 'clients_failed', 'clients_rejected', 'clients_late',
                     'clients_offline']].tolist() == [1, 1, 1, 0, 0]
    assert r['clients_offline'].tolist() == [0, 1] and r['quorum'].tolist() == [True, False]
    assert pd.isna(r['global_loss'][1]) and pd.isna(r['bytes_sent'][1])


def test_json_state_round_trip_through_real_json():
    rec = _records()
    text = json.dumps(rec.to_json_state(), allow_nan=False)       # strict JSON: NaN became null
    back = Records.from_json_state(json.loads(text))
    pd.testing.assert_frame_equal(back.tasks(), rec.tasks())
    pd.testing.assert_frame_equal(back.workers(), rec.workers())
    pd.testing.assert_frame_equal(back.rounds(), rec.rounds())
    back.add_round({'round': 3})
    assert back.num_rounds == 3 and rec.num_rounds == 2         # independent copies


@pytest.mark.parametrize('fmt', ['parquet', 'csv'])
def test_save_and_load_round_trip(tmp_path, fmt):
    rec = _records()
    paths = rec.save(tmp_path / 'out')
    assert sorted(p.name for p in paths.values()) == ['rounds.csv', 'rounds.parquet', 'tasks.csv',
                                                      'tasks.parquet', 'workers.csv', 'workers.parquet']
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == sorted(p.name for p in paths.values())
    back = Records.load(tmp_path / 'out', fmt=fmt)
    pd.testing.assert_frame_equal(back.tasks(), rec.tasks())
    pd.testing.assert_frame_equal(back.rounds(), rec.rounds())
    pd.testing.assert_frame_equal(back.workers(), rec.workers())
    assert list(back.workers()['quarantined']) == [False, True]
    assert list(back.workers().columns) == list(WORKER_COLUMNS)
    csv = pd.read_csv(tmp_path / 'out' / 'tasks.csv')
    assert list(csv.columns) == list(TASK_COLUMNS) and len(csv) == 4


def test_empty_records_save_and_load(tmp_path):
    Records().save(tmp_path)
    back = Records.load(tmp_path)
    assert back.num_tasks == 0 and list(back.tasks().columns) == list(TASK_COLUMNS)


def test_concat_runs():
    a, b = _records(), Records()
    b.add_round({'round': 1, 'global_accuracy': 0.9})
    df = concat_runs({'fedavg': a.rounds(), 'fedadam': b.rounds()})
    assert list(df.columns) == ['run'] + list(ROUND_COLUMNS)
    assert df['run'].tolist() == ['fedavg', 'fedavg', 'fedadam'] and str(df['clients_ok'].dtype) == 'Int64'


@pytest.mark.parametrize('row,match', [
    ({'round': 1, 'client': 0, 'status': 'done'}, "status 'done'.*allowed: ok, late, failed, rejected, offline"),
    ({'round': 1, 'client': 0, 'status': 'ok', 'gpu': 1}, "unknown column.*gpu"),
    ({'client': 0, 'status': 'ok'}, "lacks 'round'"),
    ({'round': 'one', 'client': 0, 'status': 'ok'}, "'round' has value 'one'.*integer"),
    ({'round': 1.5, 'client': 0, 'status': 'ok'}, "1.5"),
    ({'round': 1, 'client': 0, 'status': 'ok', 'local_loss': 'low'}, "local_loss.*number"),
])
def test_bad_task_rows(row, match):
    with pytest.raises(UserError, match=match):
        Records().add_task(row)


def test_bad_round_rows():
    with pytest.raises(UserError, match="'quorum' has value 'maybe'.*true or false"):
        Records().add_round({'round': 1, 'quorum': 'maybe'})
    with pytest.raises(UserError, match="unknown column.*clients_lost"):
        Records().add_round({'round': 1, 'clients_lost': 2})


def test_bad_state_and_files(tmp_path):
    with pytest.raises(UserError, match='version'):
        Records.from_json_state({'version': 99})
    with pytest.raises(UserError, match='does not exist'):
        Records.load(tmp_path)


def test_round_warnings_word_a_collapsed_evaluation():
    from fedjax_grid.grid.records import round_warnings
    row = {"round": 3, "logit_spread": 3e-7, "logit_spread_train": 0.4, "bn_collapse": True}
    (text,) = round_warnings(row)
    assert text.startswith("round 3: evaluation-mode logits collapsed (spread 3e-07 vs 0.4")
    assert "server.bn_mode=recalibrate" in text
    assert round_warnings(dict(row, bn_collapse=False)) == []
    assert round_warnings({"round": 1}) == []        # rounds without evaluation


def test_tables_written_before_worker_name_existed_read_back(tmp_path):
    from fedjax_grid.grid.records import Records
    rec = Records(tasks=[{'round': 1, 'client': 0, 'status': 'ok', 'worker': 'tcp://h:1',
                          'worker_name': 'desk-1'}], rounds=[{'round': 1}])
    rec.save(tmp_path)
    assert rec.tasks()['worker_name'].tolist() == ['desk-1']
    import pandas as pd
    old = pd.read_csv(tmp_path / 'tasks.csv').drop(columns=['worker_name'])
    old.to_csv(tmp_path / 'tasks.csv', index=False)
    back = Records.load(tmp_path, fmt='csv').tasks()
    assert back['worker_name'].isna().all() and back['worker'].tolist() == ['tcp://h:1']


def test_task_counts_count_clients_not_attempts():
    rec = Records()
    for attempt, status in enumerate(('failed', 'failed', 'ok')):
        rec.add_task({'round': 1, 'client': 7, 'attempt': attempt, 'status': status})
    rec.add_task({'round': 1, 'client': 2, 'status': 'late'})
    rec.add_task({'round': 2, 'client': 7, 'status': 'failed'})
    assert rec.task_counts(1) == {'clients_ok': 1, 'clients_late': 1, 'clients_failed': 1,
                                  'clients_rejected': 0, 'clients_offline': 0,
                                  'clients_dropped': 0, 'clients_stopped': 0}
