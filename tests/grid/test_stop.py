"""Stop that stops: a Stop in the middle of a round cancels its tasks in flight, ends the
run long before the round would have ended, records the round's tasks as ``stopped``
and leaves a run that resumes -- on a real LocalCluster, in sync and async rounds.

The bound is relative to a measurement (the same round run to its end on the same
machine), not a fixed number of seconds, so a loaded machine does not make it flake.
"""
import threading
import time

import numpy as np
import pytest

from fedjax_grid.grid.checkpoint import latest_checkpoint, load_checkpoint
from fedjax_grid.runner import FederatedRun
from tests.grid.conftest import assert_same_state, tiny_config

#: local epochs that make one task take seconds (a Stop must not wait for them)
EPOCHS = 10


def _poll(pred, timeout: float, what: str, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _training_now(grid, prefix: str = "client_update-") -> list:
    """Keys of client tasks the workers are running now."""
    return [k for keys in grid.client.processing().values() for k in keys
            if str(k).startswith(prefix)]


def _stop_mid_round(run, grid, prefix: str, timeout: float):
    """Run ``run`` in a thread, press Stop once its tasks with ``prefix`` train; return
    (seconds from Stop to run() returning, seconds from Stop to idle workers)."""
    stop, out = threading.Event(), {}

    def go():
        try:
            out["records"] = run.run(should_stop=stop.is_set)
        except BaseException as e:  # noqa: BLE001 - reported below
            out["error"] = e
        out["t_end"] = time.perf_counter()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    _poll(lambda: _training_now(grid, prefix), timeout, f"tasks {prefix}* training")
    t_stop = time.perf_counter()
    stop.set()
    thread.join(timeout)
    assert not thread.is_alive(), "run() still running after Stop"
    assert "error" not in out, out.get("error")
    _poll(lambda: not _training_now(grid), timeout, "the workers to drop the cancelled tasks")
    idle = time.perf_counter() - t_stop
    return out["t_end"] - t_stop, idle


@pytest.mark.slow   # suite budget (~27 s); stop and resume stay in the default run through the
# panel (tests/widgets/test_run_panel.py) and before the first round (below)
def test_stop_mid_round_sync_cancels_records_and_resumes(grid, tmp_path):
    cfg = tiny_config(**{"training.rounds": 2, "training.local_epochs": EPOCHS})
    ref = FederatedRun(cfg, out_dir=tmp_path / "ref", grid=grid)
    ref.run()
    ref.close()
    full = ref.records.rounds()
    round_s = float(full["round_time_s"].iloc[-1])   # a warm round, measured here

    run = FederatedRun(cfg, out_dir=tmp_path / "stopped", grid=grid)
    run.run(rounds=1)
    took, idle = _stop_mid_round(run, grid, "client_update-r1-", timeout=20 * round_s + 60)
    print(f"\nsync: a round takes {round_s:.2f} s here; Stop ended the run in {took:.2f} s, "
          f"the workers were idle {idle:.2f} s after Stop")
    assert took < 0.5 * round_s, (took, round_s)
    assert idle < 0.5 * round_s, (idle, round_s)

    assert run.stopped is not None and run.stopped.round == 2
    assert run.round == 1 and len(run.records.rounds()) == 1
    tasks = run.records.tasks()
    second = tasks[tasks["round"] == 2]
    assert len(second) == cfg.clients_per_round == run.stopped.tasks
    assert set(second["status"]) == {"stopped"}
    assert second["reason"].str.contains("stopped|cancelled in flight").all()
    # on disk: the records, and the checkpoint the run resumes from, hold the stopped rows
    _, meta, _ = load_checkpoint(latest_checkpoint(run.ckpt_dir))
    assert meta["round"] == 1 and meta["stopped"]["round"] == 2
    on_disk = run.records.__class__.load(run.out_dir, fmt="csv").tasks()
    assert (on_disk["status"] == "stopped").sum() == len(second)

    resumed = FederatedRun(cfg, out_dir=tmp_path / "stopped", grid=grid, resume=True)
    resumed.run()
    rounds, tasks = resumed.records.rounds(), resumed.records.tasks()
    assert list(rounds["round"]) == [1, 2]
    assert (tasks["status"] == "stopped").sum() == len(second)
    assert int(rounds.loc[rounds["round"] == 2, "clients_stopped"].iloc[0]) == len(second)
    assert int(rounds.loc[rounds["round"] == 2, "clients_ok"].iloc[0]) == cfg.clients_per_round
    # the Stop left nothing behind: the resumed run ends where the uninterrupted one did
    assert_same_state(ref, resumed)


@pytest.mark.slow
def test_stop_in_the_first_async_version_resumes_without_dropped_tasks(grid, tmp_path):
    cfg = tiny_config(**{"training.rounds": 2, "training.local_epochs": EPOCHS,
                         "server.mode": "async", "server.buffer_size": 2})
    warm = cfg.with_overrides(["server.mode=sync", "training.rounds=1", "training.local_epochs=1"])
    FederatedRun(warm, out_dir=tmp_path / "warm", grid=grid).run()   # the workers compile here
    run = FederatedRun(cfg, out_dir=tmp_path / "stopped", grid=grid)
    took, idle = _stop_mid_round(run, grid, "client_update-", timeout=1800)
    assert run.stopped is not None and run.stopped.round == 1 and run.round == 0
    tasks = run.records.tasks()
    assert len(tasks) == run.stopped.tasks >= 1
    assert set(tasks["status"]) == {"stopped"} and set(tasks["round"]) == {1}
    # stopped before any server update: the initial state was checkpointed to resume from
    _, meta, _ = load_checkpoint(latest_checkpoint(run.ckpt_dir))
    assert meta["round"] == 0 and meta["async"]["in_flight"] == []

    resumed = FederatedRun(cfg, out_dir=tmp_path / "stopped", grid=grid, resume=True)
    resumed.run()
    resumed.close()   # cancels the tasks it kept in flight
    rounds, tasks = resumed.records.rounds(), resumed.records.tasks()
    version_s = float(rounds["round_time_s"].iloc[-1])   # a version, measured here
    print(f"\nasync: a version takes {version_s:.2f} s here; Stop ended the run in {took:.2f} s, "
          f"the workers were idle {idle:.2f} s after Stop")
    assert took < 0.5 * version_s, (took, version_s)
    assert idle < 0.5 * version_s, (idle, version_s)
    assert list(rounds["round"]) == [1, 2] and resumed.done
    assert (tasks["status"] == "stopped").sum() == run.stopped.tasks
    assert not (tasks["status"] == "dropped").any()   # no task is counted lost twice
    assert np.isfinite(rounds["global_accuracy"].iloc[-1])


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stop_before_the_first_round_starts_nothing(grid, tmp_path, mode):
    cfg = tiny_config(**{"server.mode": mode})
    run = FederatedRun(cfg, out_dir=tmp_path / "x", grid=grid)
    run.run(should_stop=lambda: True)
    assert run.stopped is not None and run.stopped.tasks == 0
    assert run.round == 0 and run.records.num_tasks == 0


# -- Stop during the coordinator's evaluation --------------------------------------------

#: the test set repeated this many times: an evaluation of seconds (about 0.5 s per copy
#: of the 256 test images of tiny_config on a loaded 2-core machine)
EVAL_COPIES = 25


def _repeat_test_set(run, copies: int) -> None:
    """The run's test set repeated ``copies`` times (same accuracy, ``copies`` x the time)."""
    images, labels = run.context.exp.data.test_arrays
    run.context.exp.data.test_arrays = (np.tile(images, (copies, 1, 1, 1)), np.tile(labels, copies))


def _evaluating() -> bool:
    return any(t.name == "fedjax-grid-stoppable" and t.is_alive() for t in threading.enumerate())


@pytest.mark.slow   # three short runs on the grid (about a minute)
def test_stop_during_the_evaluation_keeps_the_round_and_resume_evaluates_it(grid, tmp_path):
    cfg = tiny_config(**{"training.rounds": 2})
    ref = FederatedRun(cfg, out_dir=tmp_path / "ref", grid=grid)
    ref.run()
    ref.close()

    run = FederatedRun(cfg, out_dir=tmp_path / "stopped", grid=grid)
    _repeat_test_set(run, EVAL_COPIES)
    t0 = time.perf_counter()
    run.evaluate()   # the whole evaluation, measured here (compiled by the reference run)
    eval_s = time.perf_counter() - t0
    stop, out = threading.Event(), {}
    thread = threading.Thread(target=lambda: out.update(records=run.run(should_stop=stop.is_set)),
                              daemon=True)
    thread.start()
    _poll(_evaluating, 600, "round 1's evaluation", step=0.01)
    time.sleep(0.2 * eval_s)   # inside it: some batches done, most not
    t_stop = time.perf_counter()
    stop.set()
    thread.join(600)
    took = time.perf_counter() - t_stop
    print(f"\nevaluation takes {eval_s:.2f} s here; Stop during it ended the run in {took:.2f} s")
    assert "records" in out and took < 0.5 * eval_s, (took, eval_s)
    _poll(lambda: not _evaluating(), 30, "the abandoned evaluation to end at its next batch")

    # round 1 is kept (its server update applied and checkpointed), without an accuracy
    rounds = run.records.rounds()
    assert run.round == 1 and list(rounds["round"]) == [1]
    assert rounds["evaluation"].iloc[0] == "stopped" and np.isnan(rounds["global_accuracy"].iloc[0])
    assert run.evaluation_pending
    _, meta, _ = load_checkpoint(latest_checkpoint(run.ckpt_dir))
    assert meta["round"] == 1
    # round 2, launched ahead while round 1 was evaluated, is recorded as stopped
    tasks = run.records.tasks()
    assert run.stopped is not None and run.stopped.round == 2
    assert set(tasks.loc[tasks["round"] == 2, "status"]) <= {"stopped"}

    resumed = FederatedRun(cfg, out_dir=tmp_path / "stopped", grid=grid, resume=True)
    assert resumed.evaluation_pending
    resumed.run()
    rounds, reference = resumed.records.rounds(), ref.records.rounds()
    assert list(rounds["round"]) == [1, 2]
    assert list(rounds["evaluation"]) == ["on resume", "done"]
    # the same state evaluated on resume: round 1's accuracy is the reference run's
    np.testing.assert_array_equal(rounds["global_accuracy"], reference["global_accuracy"])
    assert_same_state(ref, resumed)
    on_disk = run.records.__class__.load(resumed.out_dir, fmt="csv").rounds()
    assert list(on_disk["evaluation"]) == ["on resume", "done"]


@pytest.mark.slow   # a run on the grid and a resume (about half a minute)
def test_stop_during_the_last_evaluation_leaves_a_run_that_resume_evaluates(grid, tmp_path):
    cfg = tiny_config(**{"training.rounds": 1})
    run = FederatedRun(cfg, out_dir=tmp_path / "x", grid=grid)
    _repeat_test_set(run, EVAL_COPIES)
    stop = threading.Event()
    thread = threading.Thread(target=lambda: run.run(should_stop=stop.is_set), daemon=True)
    thread.start()
    _poll(_evaluating, 600, "round 1's evaluation", step=0.01)
    stop.set()
    thread.join(600)
    assert run.done and run.evaluation_pending   # all rounds done, the final accuracy not yet
    resumed = FederatedRun(cfg, out_dir=tmp_path / "x", resume=True, grid=grid)
    assert resumed.done and resumed.evaluation_pending
    resumed.run()
    row = resumed.records.rounds().iloc[-1]
    assert row["evaluation"] == "on resume" and 0.0 <= row["global_accuracy"] <= 1.0
    assert not resumed.evaluation_pending
