"""The accuracy a run records and prints is the accuracy of its saved model on the test split.

A real ``fedjax-grid run`` (digits, narrow VGG-11 with BatchNorm, 4 clients, 3 rounds,
``training.eval_every=2``, ``data.max_test_examples=200``) on a real LocalCluster; then,
independently of the engine, each round's checkpoint is loaded
(``fedjax_grid.grid.checkpoint``), the model rebuilt by the builders and evaluated with
the trainer's ``evaluate`` on the first 200 examples of the test split, with the
checkpoint's BatchNorm statistics (``server.bn_mode=recalibrate``: re-estimated after
each server step). The recorded ``global_accuracy`` (rounds.csv, a fraction) and the
printed final accuracy (a percentage) must equal those numbers: an off-by-one round,
a mis-scaled percentage, evaluation on training data, on the wrong test subset, or
the best round reported as the final one all fail here (each test first checks that
its alternative would give a different number on this run). Another run with the
BatchNorm re-estimation bypassed must record different accuracies, and the
checkpoint's statistics must equal a re-estimation of them.
"""
import contextlib
import io
import json
import math
import re

import jax
import numpy as np
import pandas as pd
import pytest

from fedjax_grid.cli import main, print_summary
from fedjax_grid.experiments import ExperimentConfig

ROUNDS, EVAL_EVERY, TEST_SUBSET = 3, 2, 200
SETS = ["model.kwargs={width: 0.125, norm: batch, head: cifar}", f"training.rounds={ROUNDS}",
        f"training.eval_every={EVAL_EVERY}", f"data.max_test_examples={TEST_SUBSET}",
        "grid.workers=2"]


def _cli(args: list[str]) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(args)
    return rc, buf.getvalue()


@pytest.fixture(scope="module")
def run(grid, tmp_path_factory):
    """(run folder, its config, printed stdout) of one real CLI run."""
    out = tmp_path_factory.mktemp("results") / "run"
    args = ["run", "--preset", "quickstart", *[a for s in SETS for a in ("--set", s)],
            "--scheduler", grid.client.scheduler.address, "--out", str(out), "--quiet",
            "--no-plots"]
    rc, printed = _cli(args)
    assert rc == 0, printed
    cfg = ExperimentConfig.from_dict(json.loads((out / "config.json").read_text()))
    return out, cfg, printed


class Independent:
    """The run's data and model, rebuilt from its config.json, not from the engine."""

    def __init__(self, cfg):
        from fedjax_grid.experiments.build import build_experiment, load_split, normalisation
        from fedjax_grid.training import Standardize
        self.cfg = cfg
        self.model = build_experiment(cfg).model
        self.train, self.test = load_split(cfg, "train"), load_split(cfg, "test")
        mean, std = normalisation(self.train)
        self.prep = Standardize(mean=mean, std=std)

    def arrays(self, split: str, n=None):
        data = self.train if split == "train" else self.test
        got = data.__getitems__(np.arange(len(data) if n is None else n))
        return got["image"], got["label"]

    def variables(self, out, round_: int) -> dict:
        from fedjax_grid.grid.checkpoint import checkpoint_path, load_checkpoint
        tree, meta, _ = load_checkpoint(checkpoint_path(out / "checkpoints", round_))
        assert meta["_checkpoint"]["round"] == round_
        return {"params": tree["params"], "batch_stats": tree["batch_stats"]}

    def accuracy(self, variables: dict, split: str = "test", n=TEST_SUBSET) -> float:
        from fedjax_grid.training import evaluate
        return evaluate(self.model, variables, self.arrays(split, n), 64,
                        preprocess=self.prep)["accuracy"]


@pytest.fixture(scope="module")
def independent(run):
    out, cfg, _ = run
    ind = Independent(cfg)
    accs = {r: ind.accuracy(ind.variables(out, r)) for r in range(1, ROUNDS + 1)}
    return ind, accs


def test_recorded_accuracy_is_the_saved_models_test_accuracy(run, independent):
    out, cfg, _ = run
    ind, accs = independent
    rounds = pd.read_csv(out / "rounds.csv")
    assert list(rounds["round"]) == [1, 2, 3]
    recorded = dict(zip(rounds["round"], rounds["global_accuracy"]))
    # eval_every=2: round 1 is not evaluated, round 2 is, and the last round always
    assert math.isnan(recorded[1])
    for r in (2, 3):
        assert 0.0 <= recorded[r] <= 1.0  # a fraction, not a percentage
        assert recorded[r] == pytest.approx(accs[r], abs=1e-6), (r, recorded, accs)
    # the checks above can tell: neighbouring rounds' models score differently here ...
    assert accs[2] != accs[3] and accs[1] != accs[2]
    # ... and so do the training data and the other test examples
    last = ind.variables(out, 3)
    assert ind.accuracy(last, "train") != pytest.approx(accs[3], abs=1e-6)
    assert ind.accuracy(last, "test", None) != pytest.approx(accs[3], abs=1e-6)
    assert len(ind.test) > TEST_SUBSET


def test_printed_final_accuracy_is_the_last_rounds(run, independent):
    _, cfg, printed = run
    _, accs = independent
    m = re.search(r"round 3/3, final global accuracy (\d+\.\d) % \(best (\d+\.\d) %\)", printed)
    assert m, printed
    assert m.group(1) == f"{100 * accs[3]:.1f}"
    assert m.group(2) == f"{100 * max(accs[2], accs[3]):.1f}"


def test_summary_prints_the_last_round_not_the_best(tmp_path, capsys):
    cfg = ExperimentConfig().with_overrides(["name=t", "training.rounds=4"])
    rounds = pd.DataFrame({"round": [1, 2, 3, 4], "global_accuracy": [0.5, 0.875, math.nan, 0.625],
                           "global_loss": [1.0, 0.5, math.nan, 0.75]})
    print_summary(cfg, rounds, tmp_path, 4)
    text = capsys.readouterr().out
    assert "t: round 4/4, final global accuracy 62.5 % (best 87.5 %), loss 0.7500" in text


def test_checkpoint_holds_re_estimated_batchnorm_statistics(run, independent):
    from fedjax_grid.training.bn_stats import calibration_indices, recalibrated_stats
    out, cfg, _ = run
    ind, _ = independent
    assert cfg.server.bn_mode == "recalibrate"
    for r in (1, 3):
        v = ind.variables(out, r)
        idx = calibration_indices(len(ind.train), cfg.server.bn_calibration_examples, cfg.seed)
        again = recalibrated_stats(ind.model, v, ind.train, cfg.training.batch_size,
                                   indices=idx, preprocess=ind.prep)
        for a, b in zip(jax.tree.leaves(v["batch_stats"]), jax.tree.leaves(again)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_skipping_the_batchnorm_re_estimation_changes_the_recorded_accuracy(
        run, independent, grid, tmp_path, monkeypatch):
    """The same run with the re-estimation bypassed (``runner.evaluation.recalibrated``
    returns the clients' averaged running statistics as they are): its recorded
    accuracies differ, so the engine's do depend on it."""
    from fedjax_grid.runner import FederatedRun, evaluation
    out, cfg, _ = run
    ind, accs = independent
    monkeypatch.setattr(evaluation, "recalibrated", lambda exp, config, state: state)
    bypass = FederatedRun(cfg, out_dir=tmp_path / "bypass", grid=grid)
    rounds = bypass.run().rounds()
    got = dict(zip(rounds["round"], rounds["global_accuracy"]))
    # still what its own checkpoint scores (the recording is right) ...
    assert got[3] == pytest.approx(ind.accuracy(ind.variables(tmp_path / "bypass", 3)), abs=1e-6)
    # ... but not what the re-estimated model scores
    assert max(abs(got[2] - accs[2]), abs(got[3] - accs[3])) > 1e-6, (got, accs)


def test_a_runs_first_rounds_do_not_depend_on_its_length(run, independent, grid, tmp_path):
    """Rounds 1-2 of the 3-round run are bitwise those of a 2-round run of the same config
    (what lets the calibration read the first rounds of the suite's longer runs)."""
    from fedjax_grid.runner import FederatedRun
    out, cfg, _ = run
    ind, accs = independent
    short = FederatedRun(cfg.with_overrides(["training.rounds=2"]), out_dir=tmp_path / "short",
                         grid=grid)
    rounds = short.run().rounds()
    assert float(rounds["global_accuracy"].iloc[-1]) == pytest.approx(accs[2], abs=1e-6)
    a, b = ind.variables(out, 2), ind.variables(tmp_path / "short", 2)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
