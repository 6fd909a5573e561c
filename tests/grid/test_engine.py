"""The federated engine on a real 2-worker LocalCluster (real processes, real JAX)."""
import os
import signal
import threading
import time

import jax
import numpy as np
import pytest

from fedjax_grid.errors import CheckpointError, UserError
from fedjax_grid.hazards import faults as fault_sim
from fedjax_grid.runner import FederatedRun
from tests.conftest import slowdown
from tests.grid.conftest import assert_same_state, stopped_and_resumed, tiny_config


def _params(run):
    return jax.tree.leaves(run.state.params)


def test_small_run_learns_and_records(grid, tmp_path):
    cfg = tiny_config(**{"training.rounds": 3})
    run = FederatedRun(cfg, out_dir=tmp_path / "run", grid=grid)
    records = run.run()
    rounds, tasks = records.rounds(), records.tasks()
    assert list(rounds["round"]) == [1, 2, 3]  # 1-based
    assert (rounds["clients_ok"] == 4).all()
    assert (tasks["status"] == "ok").all() and len(tasks) == 12
    assert set(tasks["worker"]) <= set(grid.workers())  # tasks ran on the cluster's workers
    names = {a: str(i["name"]) for a, i in grid.workers().items()}  # LocalCluster: '0', '1'
    assert list(tasks["worker_name"]) == [names[a] for a in tasks["worker"]]
    assert run.worker_names == names
    assert [s[0] for s in run.stages.log] == ["data", "model", "first_round"]  # grid was given
    assert rounds["global_accuracy"].iloc[-1] > 0.5  # 10 classes: chance is 0.1
    assert rounds["global_accuracy"].iloc[-1] > rounds["global_accuracy"].iloc[0] - 0.05
    assert (rounds["bytes_sent"] > 0).all() and (rounds["bytes_received"] > 0).all()
    assert (tasks["bytes_out"] > 0).all() and (tasks["bytes_in"] > tasks["bytes_out"]).all()
    assert rounds["bytes_received"].sum() == tasks["bytes_out"].sum()
    # the collapse check ran in every evaluation: pooled BatchNorm statistics hold up
    assert (rounds["logit_spread"] > 0).all() and (rounds["logit_spread_train"] > 0).all()
    assert not rounds["bn_collapse"].any()
    for name in ("tasks.csv", "rounds.csv", "tasks.parquet", "rounds.parquet", "config.json"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    assert len(list((tmp_path / "run" / "checkpoints").glob("ckpt-*"))) >= 1


def test_resume_reaches_identical_parameters(grid, tmp_path):
    cfg = tiny_config(**{"training.rounds": 3, "partition.forming": "hybrid"})
    full = FederatedRun(cfg, out_dir=tmp_path / "full", grid=grid)
    full.run()
    part, resumed = stopped_and_resumed(cfg, tmp_path / "part", grid, 2)
    assert part.round == 2 and resumed.round == 2
    resumed.run()
    assert_same_state(full, resumed)  # bitwise on CPU with fixed seeds
    assert list(resumed.records.rounds()["round"]) == [1, 2, 3]


def test_out_dir_with_checkpoints_needs_resume(grid, tmp_path):
    cfg = tiny_config(**{"training.rounds": 1})
    FederatedRun(cfg, out_dir=tmp_path / "r", grid=grid).run()
    with pytest.raises(UserError, match="--resume"):
        FederatedRun(cfg, out_dir=tmp_path / "r", grid=grid)
    other = tiny_config(**{"training.rounds": 1, "training.lr": 0.01})
    with pytest.raises(CheckpointError, match="another experiment"):
        FederatedRun(other, out_dir=tmp_path / "r", grid=grid, resume=True)


def _seed_with(pred, faults, clients, limit=500):
    for seed in range(limit):
        plans = [fault_sim.fault_plan(faults, seed, 0, k, 0) for k in range(clients)]
        if pred(plans):
            return seed, plans
    raise AssertionError("no seed found")


def test_nan_updates_are_rejected_and_recorded(grid, tmp_path):
    cfg = tiny_config(**{"training.rounds": 1, "faults.enabled": True, "faults.error_prob": 0.4,
                         "grid.retries": 0})
    seed, plans = _seed_with(lambda ps: 1 <= sum(p.corrupt for p in ps) <= 2, cfg.faults, 4)
    cfg = cfg.with_overrides([f"seed={seed}"])
    run = FederatedRun(cfg, out_dir=tmp_path / "nan", grid=grid)
    run.run()
    tasks = run.records.tasks().sort_values("client")
    expected = ["rejected" if p.corrupt else "ok" for p in plans]
    assert list(tasks["status"]) == expected
    assert tasks.loc[tasks["status"] == "rejected", "reason"].str.contains("finite|NaN").all()
    assert all(np.isfinite(leaf).all() for leaf in _params(run))


def test_straggler_past_deadline_is_dropped_and_recorded(grid, tmp_path):
    # Warm the workers' compiled steps first, so the deadline measures training, not XLA.
    FederatedRun(tiny_config(**{"training.rounds": 1}), out_dir=tmp_path / "warm", grid=grid).run()
    # 6 s on an idle machine (a warm tiny client trains in well under 1 s), stretched by
    # the load measured now (the healthy clients must make it), and well below the 120 s hang
    deadline = round(min(60.0, 6.0 * slowdown()), 1)
    cfg = tiny_config(**{"training.rounds": 2, "faults.enabled": True, "faults.hang_prob": 0.3,
                         "faults.hang_s": 120.0, "grid.deadline_s": deadline, "grid.quorum": 0.25})
    seed, plans = _seed_with(lambda ps: sum(p.hang_s > 0 for p in ps) == 1, cfg.faults, 4)
    cfg = cfg.with_overrides([f"seed={seed}", "training.rounds=1"])
    run = FederatedRun(cfg, out_dir=tmp_path / "late", grid=grid)
    t = time.time()
    run.run()
    assert time.time() - t < 120  # the round closed at its deadline, not after the 120 s hang
    tasks = run.records.tasks().sort_values("client")
    hung = [k for k, p in enumerate(plans) if p.hang_s > 0]
    late = tasks[tasks["status"] == "late"]
    assert list(late["client"]) == hung
    assert late["worker"].str.startswith("tcp://127.0.0.1:").all()  # where it hung
    assert (tasks[tasks["status"] == "ok"]["client"].tolist()
            == [k for k in range(4) if k not in hung])
    assert run.records.rounds()["clients_late"].iloc[0] == 1


def test_overcommit_keeps_the_first_clients_to_report(grid, tmp_path):
    # 4 clients sampled for a quota of 2 (overcommit 2); one of them hangs for 120 s.
    cfg = tiny_config(**{"training.rounds": 1, "training.clients_per_round": 2,
                         "grid.overcommit": 2, "faults.enabled": True, "faults.hang_prob": 0.3,
                         "faults.hang_s": 120.0})
    seed, plans = _seed_with(lambda ps: sum(p.hang_s > 0 for p in ps) == 1, cfg.faults, 4)
    cfg = cfg.with_overrides([f"seed={seed}"])
    run = FederatedRun(cfg, out_dir=tmp_path / "over", grid=grid)
    before = [np.array(x) for x in _params(run)]
    t = time.time()
    run.run()
    assert time.time() - t < 120  # the round closed at the quota, not after the 120 s hang
    tasks = run.records.tasks()
    assert len(tasks) == 4 and (tasks["status"] == "ok").sum() == 2
    late = tasks[tasks["status"] == "late"]
    assert len(late) == 2
    hung = [k for k, p in enumerate(plans) if p.hang_s > 0]
    assert hung[0] in set(late["client"])  # the hanging desktop is never waited for
    assert set(late["reason"]) <= {"NotNeeded: still running when the overcommit quota was met",
                                   "NotNeeded: finished after the overcommit quota was met"}
    row = run.records.rounds().iloc[0]
    assert (row["clients_sampled"], row["clients_ok"], row["clients_late"]) == (4, 2, 2)
    assert bool(row["quorum"])
    assert any(not np.array_equal(a, b) for a, b in zip(before, _params(run)))


@pytest.mark.slow
def test_worker_killed_mid_round_run_completes(grid, tmp_path):
    pids = grid.client.run(os.getpid)
    cfg = tiny_config(**{"training.rounds": 2, "faults.enabled": True, "faults.max_delay_s": 4.0})
    run = FederatedRun(cfg, out_dir=tmp_path / "kill", grid=grid)
    victim = sorted(pids.values())[0]

    def kill_soon():
        time.sleep(2.0)
        os.kill(victim, signal.SIGKILL)

    killer = threading.Thread(target=kill_soon)
    killer.start()
    run.run()
    killer.join()
    rounds = run.records.rounds()
    assert len(rounds) == 2 and rounds["quorum"].all()
    assert (rounds["clients_ok"] >= 2).all()
    assert victim not in grid.client.run(os.getpid).values()  # that process is gone


def test_resident_mode_equals_shipped(grid, tmp_path):
    """Workers opening the data themselves (indices only) train exactly as when data is shipped."""
    shipped = tiny_config(**{"training.rounds": 1})
    resident = tiny_config(**{"training.rounds": 1, "data.mode": "resident"})
    a = FederatedRun(shipped, out_dir=tmp_path / "a", grid=grid)
    a.run()
    b = FederatedRun(resident, out_dir=tmp_path / "b", grid=grid)
    b.run()
    assert_same_state(a, b)
    # Indices only: resident mode sends far fewer bytes than shipping the examples.
    assert b.records.rounds()["bytes_sent"].iloc[0] < a.records.rounds()["bytes_sent"].iloc[0]


def test_offline_and_dropouts_are_recorded_and_retried(grid, tmp_path):
    cfg = tiny_config(**{"training.rounds": 2, "faults.enabled": True, "faults.offline_prob": 0.25,
                         "faults.dropout_prob": 0.3, "faults.max_slowdown": 3.0,
                         "grid.retries": 3, "grid.quorum": 0.25, "partition.num_clients": 6})
    seed = next(s for s in range(200) if
                any(fault_sim.is_offline(cfg.faults, s, 0, k) for k in range(6)) and
                any(fault_sim.fault_plan(cfg.faults, s, 0, k, 0).dropout for k in range(6)
                    if not fault_sim.is_offline(cfg.faults, s, 0, k)))
    cfg = cfg.with_overrides([f"seed={seed}"])
    run = FederatedRun(cfg, out_dir=tmp_path / "faults", grid=grid)
    run.run()
    tasks = run.records.tasks()
    r0 = tasks[tasks["round"] == 1]  # the first round (index 0 of the fault plan)
    offline = {k for k in range(6) if fault_sim.is_offline(cfg.faults, seed, 0, k)}
    assert set(r0[r0["status"] == "offline"]["client"]) == offline
    failed = r0[r0["status"] == "failed"]
    assert len(failed) >= 1 and failed["reason"].str.contains("SimulatedDropout").all()
    for k in failed["client"]:  # each failed attempt was re-submitted as attempt + 1
        attempts = r0[r0["client"] == k]["attempt"]
        assert attempts.max() >= 1
    speed = tasks.drop_duplicates("client").set_index("client")["speed_factor"]
    assert (speed >= 1.0).all() and (speed <= 3.0).all() and speed.nunique() > 1


def test_worker_with_other_version_is_refused(tmp_path):
    from fedjax_grid.grid.cluster import open_cluster
    from fedjax_grid.grid.plugin import JaxWorkerPlugin, VersionMismatch
    cfg = tiny_config(**{"grid.workers": 1, "training.rounds": 1})
    handle = open_cluster(cfg.grid, local_directory=str(tmp_path / "dask"))
    try:
        with pytest.raises(VersionMismatch, match="0.0.0-other"):
            handle.client.register_plugin(JaxWorkerPlugin("0.0.0-other"))
        run = FederatedRun(cfg.with_overrides(["grid.retries=0"]), out_dir=tmp_path / "v",
                           grid=handle)
        run.run()
        tasks = run.records.tasks()
        assert (tasks["status"] == "failed").all()
        assert tasks["reason"].str.contains("VersionMismatch").all()
        assert not bool(run.records.rounds()["quorum"].iloc[0])
    finally:
        handle.close()


def _local_batchnorm_run(grid, tmp_path):
    cfg = tiny_config(**{"training.rounds": 2, "server.bn_mode": "local"})
    full = FederatedRun(cfg, out_dir=tmp_path / "full", grid=grid)
    full.run()
    assert sorted(full.clients.of("batch_stats")) == [0, 1, 2, 3]
    stats = [jax.tree.leaves(full.clients.of("batch_stats")[k])[0] for k in range(4)]
    assert not np.array_equal(stats[0], stats[1])  # each client kept its own statistics
    return cfg, full


def test_local_batchnorm_statistics_stay_with_clients(grid, tmp_path):
    _local_batchnorm_run(grid, tmp_path)


@pytest.mark.slow  # suite budget (~8 s): resume of the other client state (SCAFFOLD) stays
def test_local_batchnorm_statistics_stay_with_clients_and_resume(grid, tmp_path):
    cfg, full = _local_batchnorm_run(grid, tmp_path)
    _, resumed = stopped_and_resumed(cfg, tmp_path / "part", grid, 1)
    assert sorted(resumed.clients.of("batch_stats")) == [0, 1, 2, 3]
    resumed.run()
    assert_same_state(full, resumed)


def test_hostile_clients_scaled_updates_are_marked(grid, tmp_path):
    cfg = tiny_config(**{"training.rounds": 1, "faults.enabled": True,
                         "faults.attack_fraction": 0.25, "faults.attack": "scale",
                         "server.aggregator": "median"})
    hostile = fault_sim.hostile_clients(cfg.faults, cfg.seed, 4)
    assert len(hostile) == 1
    run = FederatedRun(cfg, out_dir=tmp_path / "h", grid=grid)
    run.run()
    tasks = run.records.tasks()
    marked = set(tasks[tasks["reason"].fillna("").str.contains("hostile")]["client"])
    assert marked == set(hostile)
    assert run.records.rounds()["global_accuracy"].iloc[0] > 0.2


def _affinity():
    return sorted(os.sched_getaffinity(0))


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs >= 2 schedulable cores")
def test_local_workers_are_pinned_to_disjoint_cores(grid):
    cores = list(grid.client.run(_affinity).values())
    assert len(cores) == 2 and all(cores)
    assert not set(cores[0]) & set(cores[1])  # XLA in each worker uses its own share


def test_slow_by_worker_draws_one_factor_per_worker_and_records_it(grid, tmp_path):
    """faults.slow_by=worker: the slow-down belongs to the desktop that runs the task (any
    desktop trains any client), not to the client; each task records its worker's factor."""
    cfg = tiny_config(**{"training.rounds": 1, "faults.enabled": True,
                         "faults.max_slowdown": 3.0, "faults.slow_by": "worker",
                         "partition.num_clients": 4})
    plan = fault_sim.fault_plan(cfg.faults, cfg.seed, 0, 1)
    assert plan.speed_factor == 1.0 and plan.worker_max_slowdown == 3.0
    run = FederatedRun(cfg, out_dir=tmp_path / "slow_by_worker", grid=grid)
    run.run()
    tasks = run.records.tasks()
    ok = tasks[tasks["status"] == "ok"]
    assert len(ok) == 4
    for _, row in ok.iterrows():
        name = row["worker_name"] if isinstance(row["worker_name"], str) and row["worker_name"] \
            else row["worker"]
        assert row["speed_factor"] == pytest.approx(
            fault_sim.worker_speed_factor(3.0, cfg.seed, name))
    # one factor per worker, whichever clients it trained
    assert (ok.groupby("worker")["speed_factor"].nunique() == 1).all()


def test_bf16_on_workers_without_a_native_bf16_matmul_is_warned_at_start(grid, tmp_path):
    from fedjax_grid.grid.plugin import NATIVE_BF16_FLAGS, cpu_flags
    from fedjax_grid.runner.engine import worker_bf16_support
    reports = worker_bf16_support(grid.client)
    assert set(reports) == set(grid.workers())
    native = any(f in cpu_flags() for f in NATIVE_BF16_FLAGS)  # the workers run here
    assert all(r == {"backend": "cpu", "native_bf16": native} for r in reports.values())
    for precision, warned in (("f32", False), ("bf16", not native)):
        notes = []
        run = FederatedRun(tiny_config(**{"training.precision": precision}),
                           out_dir=tmp_path / precision, grid=grid, notify=notes.append)
        try:
            run.start()
            run.start()  # asked once per run
        finally:
            run.close()
        if warned:
            assert len(notes) == 1 and notes[0].startswith(
                "training.precision=bf16 on 2 of 2 workers whose CPUs have no native bf16 "
                "matmul"), notes
        else:
            assert notes == [], (precision, notes)
