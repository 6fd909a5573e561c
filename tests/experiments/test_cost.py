"""experiments.cost: the pure estimate (by hand), a real measured step, its per-machine cache."""
import math

import pytest

from fedjax_grid.experiments import cost as C
from fedjax_grid.experiments import get_preset

STEP = C.StepTime(step_s=0.05, overhead_s=0.2, compile_s=10.0, where="here", measured_at=0.0)
PAYLOAD = {"full": 1000, "broadcast": 1000, "update": 1000}


def _quick(*sets):
    return get_preset("quickstart").with_overrides(list(sets)).validate()


def test_sync_localcluster_round_is_the_machines_compute_for_every_task():
    cfg = _quick("training.rounds=8", "partition.num_clients=4", "training.batch_size=32",
                 "server.bn_calibration_examples=2048")
    est = C.estimate(cfg, train_size=1437, example_bytes=100, payload_bytes=PAYLOAD, step=STEP,
                     workers=2, test_size=360)
    steps = math.ceil((1437 // 4) / 32)                     # 12 steps of one local epoch
    coordinator = 0.05 / 32 / 3 * (1437 + 360)               # BN pass (capped at D) + evaluation
    assert est.steps_per_task == steps == 12 and est.tasks_per_round == 4 and est.parallel == 1
    assert est.round_s == pytest.approx(4 * (12 * 0.05 + 0.2) + coordinator)
    assert est.wall_s == pytest.approx(10.0 + 8 * est.round_s)
    assert est.bytes_up == 8 * 4 * 1000
    assert est.bytes_down == 8 * (2 * 1000 + 4 * 359 * 100)   # broadcast to 2 workers + examples
    assert not est.needs_confirmation(600) and est.needs_confirmation(1.0)


def test_a_scheduler_runs_the_tasks_of_a_round_in_parallel_and_resident_data_ships_nothing():
    cfg = _quick("training.rounds=2", "grid.scheduler=tcp://10.0.0.5:8786", "data.mode=resident")
    est = C.estimate(cfg, train_size=1437, example_bytes=100, payload_bytes=PAYLOAD, step=STEP,
                     workers=4, test_size=360, rounds_done=1)
    assert est.parallel == 4 and est.rounds == 1        # one round still to run
    assert est.round_s == pytest.approx(1 * (12 * 0.05 + 0.2) + 0.05 / 32 / 3 * (1437 + 360))
    assert est.bytes_down == 4 * 1000                  # no examples shipped


def test_async_counts_server_updates_of_a_buffer_each_and_delta_broadcast_sends_one_full_copy():
    cfg = _quick("server.mode=async", "server.concurrency=4", "server.buffer_size=2",
                 "training.rounds=6", "server.broadcast=delta", "server.broadcast_codec=int8")
    pay = {"full": 4000, "broadcast": 1000, "update": 1000}
    est = C.estimate(cfg, train_size=1437, example_bytes=0, payload_bytes=pay, step=STEP,
                     workers=2, test_size=360)
    assert est.tasks_per_round == 2 and est.rounds == 6
    assert est.bytes_down == 6 * 2 * 1000 + 2 * (4000 - 1000)
    assert est.bytes_up == 6 * 2 * 1000


def test_summary_names_time_bytes_and_where_the_step_was_measured():
    cfg = _quick("training.rounds=90")
    est = C.estimate(cfg, train_size=50_000, example_bytes=3080, payload_bytes=PAYLOAD,
                     step=STEP, workers=2, test_size=10_000)
    text = est.summary()
    assert text.startswith("estimate: ") and " h wall time" in text and "50.0 ms per step" in text
    assert "measured on here" in text and "to the workers" in text


def test_payload_bytes_follow_the_codecs():
    import numpy as np
    variables = {"params": {"w": np.zeros((1000, 100), np.float32)},
                 "batch_stats": {"m": np.zeros(100, np.float32)}}
    plain = C.payload_bytes(_quick(), variables)
    assert plain["full"] == (100_000 + 100) * 4                  # float32, BN statistics included
    assert plain["full"] <= plain["update"] < plain["full"] + 1000   # + the payload's framing
    small = C.payload_bytes(_quick("server.codec=quant(3)"), variables)
    assert small["update"] < plain["update"] / 8


def test_a_real_step_is_measured_and_cached_per_machine(tmp_path, monkeypatch):
    from fedjax_grid.experiments.build import build_data, build_experiment
    from fedjax_grid.federated.server import server_variables
    monkeypatch.setattr(C, "_cache_path", lambda: tmp_path / "step_times.json")
    cfg = _quick("model.kwargs={width: 0.125, norm: batch, head: cifar}")
    data = build_data(cfg)
    exp = build_experiment(cfg, data=data)
    variables = server_variables(exp.initial_state()[0])
    args = (exp.model_key, exp.model, variables, data.info.image_shape, 10, exp.hparams)
    step = C.step_time(*args)
    assert 0 < step.step_s < 5 and step.compile_s >= 0 and not step.cached
    again = C.step_time(*args)
    assert again.cached and again.step_s == step.step_s   # from the file, not measured again
    assert (tmp_path / "step_times.json").is_file()
    est = C.estimate(cfg, train_size=len(data.train), example_bytes=1032,
                     payload_bytes=C.payload_bytes(cfg, variables), step=again, workers=2,
                     test_size=len(data.test_arrays[1]))
    assert "measured on" in est.summary() and est.wall_s > 0
