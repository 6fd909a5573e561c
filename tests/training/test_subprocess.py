"""Checks that need a fresh process: forced 2 host devices, the persistent compile cache."""
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import pytest


HERE = pathlib.Path(__file__).resolve().parent


def _run(code: str, env_extra: dict, timeout=240) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", **env_extra)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


TWO_DEVICES = """
    import json, jax, numpy as np
    from training_models import TinyCNN
    from fedjax_grid.errors import UserError
    from fedjax_grid.training import HParams, local_train, evaluate, init_variables
    devs = jax.local_devices()
    assert len(devs) == 2, devs
    model = TinyCNN()
    variables = init_variables(model, (16, 16, 3), 0)
    rs = np.random.RandomState(0)
    data = (rs.randint(0, 256, (27, 16, 16, 3)).astype(np.uint8), rs.randint(0, 10, 27))
    hp = HParams(optimizer="momentum", learning_rate=0.05, batch_size=8, epochs=2, augment=True)
    one, m1 = local_train(model, variables, data, hp, 5, devices=devs[:1])
    two, m2 = local_train(model, variables, data, hp, 5, devices=devs)
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / (np.abs(np.asarray(a)) + 1e-3)))
               for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(two)))
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(variables)))
    e1 = evaluate(model, one, data, 8, devices=devs[:1])
    e2 = evaluate(model, two, data, 8, devices=devs)
    shards = len(two["params"]["Dense_0"]["kernel"].sharding.device_set)
    try:
        local_train(model, variables, data, HParams(batch_size=7), 0, devices=devs)
        odd = "no error"
    except UserError as err:
        odd = str(err)
    print(json.dumps(dict(diff=diff, moved=moved, m1=m1, m2=m2, e1=e1, e2=e2, shards=shards, odd=odd)))
"""


def test_two_devices_match_one_device():
    out = _run(TWO_DEVICES, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert out["shards"] == 2  # parameters replicated on both devices
    assert out["moved"] > 1e-3  # training did change the variables
    assert out["diff"] < 1e-4, out
    for k in ("loss", "accuracy"):
        assert abs(out["m1"][k] - out["m2"][k]) < 1e-4
        assert abs(out["e1"][k] - out["e2"][k]) < 1e-4
    assert out["m1"]["num_steps"] == out["m2"]["num_steps"] == 8
    assert "divisible" in out["odd"] and "7" in out["odd"]


PERSISTENT = """
    import json, os, sys, jax, numpy as np
    from training_models import PlainCNN
    from fedjax_grid.training import (HParams, compile_count, enable_persistent_cache,
                                      init_variables, local_train)
    enable_persistent_cache(sys.argv[1] if len(sys.argv) > 1 else os.environ["CACHE_DIR"])
    model = PlainCNN()
    variables = init_variables(model, (8, 8, 3), 0)
    rs = np.random.RandomState(0)
    data = (rs.randint(0, 256, (10, 8, 8, 3)).astype(np.uint8), rs.randint(0, 10, 10))
    _, m = local_train(model, variables, data, HParams(batch_size=4), 0)
    print(json.dumps(dict(count=compile_count(), loss=m["loss"])))
"""


def test_persistent_cache_is_populated_and_reused(tmp_path):
    cache = tmp_path / "jax-cache"
    first = _run(PERSISTENT, {"CACHE_DIR": str(cache)})
    files = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert first["count"] >= 2 and len(files) >= 2
    second = _run(PERSISTENT, {"CACHE_DIR": str(cache)})
    assert second["loss"] == first["loss"]
    # the second process loaded every program from disk: no new cache entries
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == files


AOT = """
    import json, os, numpy as np
    from training_models import TinyCNN
    from fedjax_grid.training import HParams, enable_persistent_cache, init_variables, local_train
    from fedjax_grid.training import trainer
    traced = []
    build = trainer.train_step_fn

    def counting(*a, **k):  # counts the Python executions (traces) of the train step
        step = build(*a, **k)
        def traced_step(*args):
            traced.append(1)
            return step(*args)
        return traced_step
    trainer.train_step_fn = counting
    enable_persistent_cache(os.environ["CACHE_DIR"])
    model = TinyCNN()
    variables = init_variables(model, (8, 8, 3), 0)
    rs = np.random.RandomState(0)
    data = (rs.randint(0, 256, (10, 8, 8, 3)).astype(np.uint8), rs.randint(0, 10, 10))
    new, m = local_train(model, variables, data, HParams(batch_size=4, augment=True), 3)
    total = float(sum(np.abs(np.asarray(a, np.float64)).sum() for a in
                      __import__("jax").tree.leaves(new)))
    print(json.dumps(dict(traced=len(traced), loss=m["loss"], total=total)))
"""


@pytest.mark.slow
def test_programs_persist_whole_a_second_process_traces_nothing(tmp_path):
    env = {"CACHE_DIR": str(tmp_path / "cache")}
    first = _run(AOT, env)
    programs = sorted((tmp_path / "cache" / "fedjax_grid-aot").glob("*.pkl"))
    assert first["traced"] >= 1 and len(programs) >= 3  # init, optimizer init, train step
    second = _run(AOT, env)
    assert second["traced"] == 0  # loaded: neither traced nor lowered nor compiled
    assert (second["loss"], second["total"]) == (first["loss"], first["total"])
    off = _run(AOT, dict(env, FEDJAX_GRID_AOT="0"))
    assert off["traced"] >= 1 and (off["loss"], off["total"]) == (first["loss"], first["total"])
    for p in programs:  # damaged entries are compiled again, with the same numbers
        p.write_bytes(b"not a program")
    again = _run(AOT, env)
    assert again["traced"] >= 1 and (again["loss"], again["total"]) == (first["loss"], first["total"])
    # removed, and stored again where this process compiled the program itself
    assert all(not p.exists() or p.read_bytes() != b"not a program" for p in programs)


@pytest.mark.slow
def test_a_program_jax_loaded_from_its_cache_is_not_persisted_whole(tmp_path):
    # jaxlib 0.10.2: an executable JAX loaded from its persistent cache serialises without
    # its kernels; stored, every later process failed calling it ("NOT_FOUND: Function").
    env = {"CACHE_DIR": str(tmp_path / "cache")}
    off = _run(AOT, dict(env, FEDJAX_GRID_AOT="0"))  # fills JAX's cache only
    first = _run(AOT, env)  # obtains its programs from JAX's cache: none is stored whole
    assert not list((tmp_path / "cache").rglob("fedjax_grid-aot/*.pkl"))
    second = _run(AOT, env)
    assert (first["loss"], first["total"]) == (second["loss"], second["total"]) == \
        (off["loss"], off["total"])
