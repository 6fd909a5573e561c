"""Codecs and link speed wired into the engine, on a real 2-worker LocalCluster.

Each upload codec (server.codec) for 2 rounds: the global model still learns, each
task's bytes_out is exactly the payload of its encoded delta (plus the BatchNorm
statistics) and the records name the codec; the top-k residual (error feedback) is
checkpointed and a resumed run is bitwise the uninterrupted one; the broadcast
codec (server.broadcast_codec) shrinks bytes_sent; a link preset (faults.link) adds
its transfer time to every task (transfer_s) in sync and async modes.
"""
import jax
import numpy as np
import pytest

from fedjax_grid.compression import make_codec, payload_nbytes
from fedjax_grid.grid.dispatch import tree_nbytes
from fedjax_grid.hazards.links import link_of
from fedjax_grid.runner import FederatedRun
from tests.grid.conftest import assert_same_state, stopped_and_resumed, tiny_config


def _params(run):
    return jax.tree.leaves(run.state.params)


def _expected_bytes_out(run, codec: str) -> int:
    """Payload bytes of a delta of the model's structure under ``codec`` (every codec here
    has a payload size that depends on the structure only) plus the BatchNorm statistics."""
    rng = np.random.default_rng(0)
    like = jax.tree.map(lambda x: rng.normal(size=np.shape(x)).astype(np.float32),
                        run.state.params)
    payload, _ = make_codec(codec).encode(like, np.random.default_rng(1), None)
    return payload_nbytes(payload) + tree_nbytes(run.state.batch_stats)


#: codec -> largest bytes_out / float32 bytes (raw tiny leaves and BatchNorm stay float32)
RATIO = {"none": 1.01, "bf16": 0.52, "int8": 0.27, "topk(0.01)": 0.05,
         "quant(bits=3, feedback=true)": 0.11}


#: suite budget: none and the error-feedback quantiser stay in the default run; the other
#: codecs' bytes are checked on real runs there too (test_bf16_broadcast_halves_bytes_sent)
#: and their encode/decode in tests/compression
DEFAULT_RUN = ("none", "quant(bits=3, feedback=true)")


@pytest.mark.parametrize("codec", [c if c in DEFAULT_RUN else pytest.param(c, marks=pytest.mark.slow)
                                   for c in RATIO])
def test_each_codec_learns_and_counts_its_bytes(grid, tmp_path, codec):
    cfg = tiny_config(**{"training.rounds": 2, "server.codec": codec})
    run = FederatedRun(cfg, out_dir=tmp_path / "run", grid=grid)
    records = run.run()
    rounds, tasks = records.rounds(), records.tasks()
    assert (tasks["status"] == "ok").all() and len(tasks) == 8
    assert np.isfinite(rounds["global_accuracy"]).all()
    assert rounds["global_accuracy"].iloc[-1] > 0.2  # 10 classes: chance is 0.1
    assert set(tasks["codec"]) == {str(cfg.server.codec)}
    expected = _expected_bytes_out(run, codec)
    assert (tasks["bytes_out"] == expected).all()
    float32 = tree_nbytes((run.state.params, run.state.batch_stats))
    assert expected <= RATIO[codec] * float32, (codec, expected / float32)
    assert rounds["bytes_received"].sum() == tasks["bytes_out"].sum()
    assert (tasks["transfer_s"] == 0).all()
    assert bool(run.clients.of("codec")) == make_codec(codec).stateful


@pytest.mark.slow
def test_topk_residual_is_checkpointed_and_resume_is_bitwise(grid, tmp_path):
    cfg = tiny_config(**{"training.rounds": 3, "server.codec": "topk(0.01)"})
    full = FederatedRun(cfg, out_dir=tmp_path / "full", grid=grid)
    full.run()
    part, resumed = stopped_and_resumed(cfg, tmp_path / "part", grid, 2)
    assert resumed.round == 2 and sorted(resumed.clients.of("codec")) == sorted(part.clients.of("codec"))
    for k, state in part.clients.of("codec").items():  # every residual restored exactly
        a = jax.tree.leaves(state)
        b = jax.tree.leaves(resumed.clients.of("codec")[k])
        assert len(a) == len(b) and any(np.abs(x).sum() > 0 for x in a)
        for x, y in zip(sorted(a, key=np.shape), sorted(b, key=np.shape)):
            assert x.shape == y.shape
        np.testing.assert_array_equal(np.sort(np.concatenate([x.ravel() for x in a])),
                                      np.sort(np.concatenate([y.ravel() for y in b])))
    resumed.run()
    assert_same_state(full, resumed)  # bitwise, residuals included
    for k in full.clients.of("codec"):
        for x, y in zip(jax.tree.leaves(full.clients.of("codec")[k]),
                        jax.tree.leaves(resumed.clients.of("codec")[k])):
            np.testing.assert_array_equal(x, y)


def test_bf16_broadcast_halves_bytes_sent(grid, tmp_path):
    plain = FederatedRun(tiny_config(**{"training.rounds": 1}), out_dir=tmp_path / "a", grid=grid)
    plain.run()
    cfg = tiny_config(**{"training.rounds": 1, "server.broadcast_codec": "bf16"})
    run = FederatedRun(cfg, out_dir=tmp_path / "b", grid=grid)
    tasks = run.run().tasks()
    assert (tasks["status"] == "ok").all()
    model_f32 = tree_nbytes(plain.global_variables)
    model_bf16 = payload_nbytes(run.broadcast_value(run.global_variables, 0))
    assert model_bf16 < 0.55 * model_f32
    # each task's bytes_in: the (encoded) model plus the same shipped examples
    a, b = plain.records.tasks(), tasks
    np.testing.assert_array_equal(a["bytes_in"] - model_f32, b["bytes_in"] - model_bf16)


def _link_checks(run, tasks, preset):
    ok = tasks[tasks["status"] == "ok"]
    assert len(ok) > 0
    model = payload_nbytes(run.broadcast_value(run.global_variables, 0)) \
        if run.config.server.broadcast_codec.name != "none" else tree_nbytes(run.global_variables)
    for _, t in ok.iterrows():
        link = link_of(preset, run.config.seed, int(t["client"]))
        want = link.download_seconds(model) + link.upload_seconds(int(t["bytes_out"]))
        assert t["transfer_s"] == pytest.approx(want, rel=1e-6)
        assert t["transfer_s"] > 0.2 and t["duration_s"] > t["transfer_s"]


@pytest.mark.slow
def test_link_preset_adds_transfer_time_sync(grid, tmp_path):
    preset = "home(up_mbit=1.0, down_mbit=2.0)"
    cfg = tiny_config(**{"training.rounds": 1, "faults.link": preset})
    run = FederatedRun(cfg, out_dir=tmp_path / "run", grid=grid)
    tasks = run.run().tasks()
    _link_checks(run, tasks, preset)


@pytest.mark.slow
def test_async_topk_bf16_broadcast_and_link(grid, tmp_path):
    preset = "wifi(up_mbit=1.0, down_mbit=2.0)"
    cfg = tiny_config(**{"training.rounds": 2, "server.mode": "async", "server.codec": "topk(0.05)",
                         "server.broadcast_codec": "bf16", "faults.link": preset})
    run = FederatedRun(cfg, out_dir=tmp_path / "run", grid=grid)
    records = run.run()
    tasks, rounds = records.tasks(), records.rounds()
    assert np.isfinite(rounds["global_accuracy"]).all()
    ok = tasks[tasks["status"] == "ok"]
    assert (ok["bytes_out"] == _expected_bytes_out(run, "topk(0.05)")).all()
    assert set(tasks["codec"]) == {str(cfg.server.codec)}
    assert set(run.clients.of("codec")) == set(ok["client"])
    _link_checks(run, tasks, preset)


DELTA = {"server.broadcast": "delta", "server.broadcast_codec": "quant(3)",
         "server.codec": "quant(3)"}


# suite budget (~14 s): each client's download is also counted by the two delta tests below
# (lost copies, async versions in flight); -m slow adds the bitwise resume
@pytest.mark.slow
def test_delta_broadcast_counts_each_clients_download_and_resumes_bitwise(grid, tmp_path):
    """server.broadcast='delta': round 1 sends the full reference, later rounds one
    quant(3) step (~10x fewer bytes), per task and at the Dask level; every worker and
    client ends holding the last version; a resumed run is bitwise the uninterrupted one."""
    cfg = tiny_config(**{"training.rounds": 3, **DELTA})
    full = FederatedRun(cfg, out_dir=tmp_path / "full", grid=grid)
    records = full.run()
    tasks, rounds = records.tasks(), records.rounds()
    assert (tasks["status"] == "ok").all() and len(tasks) == 12
    assert rounds["global_accuracy"].iloc[-1] > 0.2
    chain = full.broadcast.chain
    assert chain.version == 2 and chain.versions == [0, 1, 2]
    assert 8 < chain.full_nbytes / chain.step_nbytes[2] < 12
    by = tasks.pivot(index="client", columns="round", values="bytes_in")
    # the same client's data (static forming) each round: the difference is the model part
    np.testing.assert_array_equal(by[1] - by[2], chain.full_nbytes - chain.step_nbytes[1])
    np.testing.assert_array_equal(by[2] - by[3], chain.step_nbytes[1] - chain.step_nbytes[2])
    # Dask level: the full reference to each worker in round 1, then one step each
    sent = rounds["bytes_sent"].to_numpy()
    assert abs(sent[0] - sent[1] - 2 * (chain.full_nbytes - chain.step_nbytes[1])) <= 2 * 64
    assert set(full.broadcast.worker_versions.values()) == {2} and len(full.broadcast.worker_versions) == 2
    assert full.clients.of("version") == {0: 2, 1: 2, 2: 2, 3: 2}
    # clients trained from the reference: the global model within one level of the last
    # step's rounding (closed loop: |R_v - W_v| = |decoded step - true step| <= its scale)
    gap = max(float(np.abs(a - b).max()) for a, b in
              zip(jax.tree.leaves(chain.reference["params"]), _params(full)))
    level = max(float(leaf["scale"].max()) for leaf in chain.steps[2]["body"]["leaves"]
                if "scale" in leaf)
    assert 0 < gap <= level * (1 + 1e-5)

    _, resumed = stopped_and_resumed(cfg, tmp_path / "part", grid, 2)
    assert resumed.broadcast.chain.version == 1 and resumed.clients.of("version") == {0: 1, 1: 1, 2: 1, 3: 1}
    resumed.run()
    assert_same_state(full, resumed)
    # after the resume the workers' copies are unknown: round 3 sends the full reference
    assert resumed.records.rounds()["bytes_sent"].iloc[-1] > sent[-1]


def _forget_held():
    from fedjax_grid.grid import tasks
    tasks._HELD.clear()


def test_desktops_that_lose_their_copy_get_the_full_model_within_the_round(grid, tmp_path):
    """Every desktop forgets its copy (a restart at the same address): the round's first
    attempts fail with StaleCopy, the retries get the full reference and succeed."""
    cfg = tiny_config(**{"training.rounds": 3, **DELTA})
    run = FederatedRun(cfg, out_dir=tmp_path / "run", grid=grid)
    run.step()
    grid.client.run(_forget_held)
    row = run.step()
    assert row["clients_ok"] == 4
    tasks = run.records.tasks()
    second = tasks[tasks["round"] == 2]
    failed = second[second["status"] == "failed"]
    assert len(failed) >= 1 and failed["reason"].str.startswith("StaleCopy").all()
    assert (second[second["status"] == "ok"]["attempt"] >= 1).any()
    assert run.step()["clients_ok"] == 4
    run.close()


def test_async_delta_broadcast_with_versions_in_flight(grid, tmp_path):
    """FedBuff with the delta broadcast: tasks of several versions in flight, each worker
    reconstructs the version its task started from; every task ends ok, downloads after
    the first are steps, and the model learns."""
    cfg = tiny_config(**{"training.rounds": 4, "server.mode": "async", "server.concurrency": 4,
                         "server.buffer_size": 2, **DELTA})
    run = FederatedRun(cfg, out_dir=tmp_path / "run", grid=grid)
    records = run.run()
    tasks, rounds = records.tasks(), records.rounds()
    ended = tasks["reason"].str.startswith("NotNeeded: still running when the run ended", na=False)
    assert (tasks.loc[~ended, "status"] == "ok").all() and len(rounds) == 4
    assert rounds["global_accuracy"].iloc[-1] > 0.2
    assert run.broadcast.chain.version == 4 and set(run.broadcast.worker_versions.values()) <= set(range(5))
    full = run.broadcast.chain.full_nbytes
    # the first task of each client downloads the full reference, its later ones steps only
    first = tasks.sort_values("start_s").groupby("client").head(1).index
    later = tasks.drop(index=first)
    assert len(later) > 0 and (later["bytes_in"] < tasks.loc[first, "bytes_in"].min()).all()
    assert (tasks.loc[first, "bytes_in"] > full).all()
