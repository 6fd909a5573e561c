"""Attacks of hostile clients (grid/faults.py): registered with their parameters, drawn into
fault plans from the config's faults.attack choice, applied to the honest update."""
import numpy as np
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.experiments import ExperimentConfig
from fedjax_grid.hazards.faults import ATTACKS, attack_delta, fault_plan, hostile_clients


def _trees():
    rng = np.random.default_rng(0)
    g = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": rng.standard_normal(5).astype(np.float32)}
    w = {k: (v + rng.standard_normal(v.shape).astype(np.float32) * 0.1) for k, v in g.items()}
    return w, g


def _norm(tree):
    return float(np.sqrt(sum(np.sum(np.square(x.astype(np.float64))) for x in tree.values())))


def test_registered_attacks_and_their_effect():
    assert list(ATTACKS) == ["scale", "signflip", "random"]
    w, g = _trees()
    delta = {k: w[k] - g[k] for k in w}
    scaled = attack_delta("scale", {"scale": 3.0}, delta, seed=(0, 1, 2))
    flipped = attack_delta("signflip", {"scale": 2.0}, delta, seed=(0, 1, 2))
    noise = attack_delta("random", {"scale": 4.0}, delta, seed=(0, 1, 2))
    for k in w:
        np.testing.assert_allclose(scaled[k], 3.0 * delta[k], rtol=1e-6)
        np.testing.assert_allclose(flipped[k], -2.0 * delta[k], rtol=1e-6)
        assert scaled[k].dtype == delta[k].dtype
    assert _norm(noise) == pytest.approx(4.0 * _norm(delta), rel=1e-4)
    again = attack_delta("random", {"scale": 4.0}, delta, seed=(0, 1, 2))
    assert all(np.array_equal(noise[k], again[k]) for k in w)   # seeded by (seed, round, client)
    with pytest.raises(UserError, match="unknown attack 'flood'"):
        attack_delta("flood", {}, delta)


def test_fault_plans_carry_the_configured_attack():
    cfg = ExperimentConfig().with_overrides([
        "faults.enabled=true", "faults.attack_fraction=0.5", "faults.attack=signflip(4)"])
    hostile = hostile_clients(cfg.faults, cfg.seed, 4)
    assert len(hostile) == 2
    for client in range(4):
        plan = fault_plan(cfg.faults, cfg.seed, 0, client, num_clients=4)
        if client in hostile:
            assert (plan.attack, plan.attack_scale, plan.attack_params) == ("signflip", 4.0, {"scale": 4.0})
        else:
            assert (plan.attack, plan.attack_scale, plan.attack_params) == ("", 0.0, {})
    with pytest.raises(UserError) as e:
        cfg.with_overrides(["faults.attack.scale=-1"])
    assert e.value.path == "faults.attack.scale"
