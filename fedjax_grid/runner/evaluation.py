"""The coordinator's own computations on the global model: evaluation and BatchNorm.

Both read the run's data and model (``exp``: :class:`~fedjax_grid.experiments.build.Experiment`)
and its config; neither touches the grid.
"""
from __future__ import annotations


def evaluate(exp, config, gvars: dict, interrupt=None) -> dict:
    """The global model ``gvars`` on the test split: ``{'loss', 'accuracy', 'num_examples'}``
    plus the collapse check on the first test batch (``training.bn_stats.logit_spread``):
    ``logit_spread`` / ``logit_spread_train`` (evaluation- / training-mode logits)
    and ``bn_collapse``. ``interrupt()`` is called before every test batch and before
    the collapse check (it may raise: a Stop, :mod:`fedjax_grid.runner.stoppable`)."""
    from fedjax_grid.training import Standardize
    from fedjax_grid.training import evaluate as evaluate_model
    from fedjax_grid.training.bn_stats import logit_spread
    images, labels = exp.data.test_arrays
    prep = Standardize(mean=exp.data.mean, std=exp.data.std)
    batch = config.training.test_batch_size
    out = evaluate_model(exp.model, gvars, (images, labels), batch, preprocess=prep,
                         interrupt=interrupt)
    if len(images) >= 2:
        if interrupt is not None:
            interrupt()
        spread = logit_spread(exp.model, gvars, images[:batch], preprocess=prep)
        out.update(logit_spread=spread["eval"], logit_spread_train=spread["train"],
                   bn_collapse=spread["collapsed"])
    return out


def recalibrated(exp, config, state):
    """bn_mode 'recalibrate' / 'local': ``state`` with its BatchNorm statistics
    re-estimated exactly on ``server.bn_calibration_examples`` training examples (a
    seeded subset, the same every time); else ``state`` unchanged."""
    s = config.server
    if s.bn_mode not in ("recalibrate", "local") or state.batch_stats is None:
        return state
    from fedjax_grid.federated.server import server_variables
    from fedjax_grid.training import Standardize
    from fedjax_grid.training.bn_stats import calibration_indices, recalibrated_stats
    train = exp.data.train
    idx = calibration_indices(len(train), s.bn_calibration_examples, config.seed)
    return state._replace(batch_stats=recalibrated_stats(
        exp.model, server_variables(state), train, config.training.batch_size,
        indices=idx, preprocess=Standardize(mean=exp.data.mean, std=exp.data.std)))
