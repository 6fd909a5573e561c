"""benchmarks/bf16_gradients.py: a bf16 gradient against float32's, per implementation."""
import numpy as np
import pytest

from benchmarks import bf16_gradients as bg


def test_compare_gives_relative_error_cosine_and_the_worst_parameter():
    ref = {"a": np.array([3.0, 4.0]), "b": np.array([0.0, 1.0])}
    same = bg.compare(ref, {k: v.copy() for k, v in ref.items()})
    assert same[0] == 0.0 and same[1] == pytest.approx(1.0)
    double = bg.compare(ref, {k: 2 * v for k, v in ref.items()})
    assert double[0] == pytest.approx(1.0) and double[1] == pytest.approx(1.0)
    # only b moves, to an orthogonal direction: |d| = sqrt(2), |ref| = sqrt(26)
    err, cos, worst, worst_err = bg.compare(ref, {"a": ref["a"], "b": np.array([1.0, 0.0])})
    assert err == pytest.approx(np.sqrt(2 / 26)) and cos == pytest.approx(25 / 26)
    assert worst == "b" and worst_err == pytest.approx(np.sqrt(2))
    # a leaf with (next to) no gradient is never the worst, however far it moves
    tiny = {"a": np.array([3.0, 4.0]), "z": np.array([1e-9, 0.0])}
    assert bg.compare(tiny, {"a": tiny["a"] * 1.1, "z": np.array([1.0, 1.0])})[2] == "a"
    with pytest.raises(ValueError, match="different parameters"):
        bg.compare(ref, {"a": ref["a"]})


def test_the_biases_of_convolutions_before_batchnorm_are_left_out():
    tree = {"conv0": {"bias": np.ones(2), "kernel": np.ones((3, 2))},
            "bn0": {"scale": np.ones(2), "bias": np.ones(2)}, "dense": {"bias": np.ones(2)}}
    assert sorted(bg.compared_leaves(tree)) == [
        "['bn0']['bias']", "['bn0']['scale']", "['conv0']['kernel']", "['dense']['bias']"]
    no_bn = {"conv0": {"bias": np.ones(2), "kernel": np.ones((3, 2))}}
    assert "['conv0']['bias']" in bg.compared_leaves(no_bn)


@pytest.mark.parametrize("argv, word", [(["--models", "resnet9"], "--models 'resnet9'"),
                                        (["--batches", "0"], "--batches 0")])
def test_bad_arguments_exit_2_with_one_line(argv, word, capsys):
    assert bg.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and word in err and "invalid" in err


@pytest.mark.slow
@pytest.mark.parametrize("model", ["vgg16_w025", "mobilenet_v3_small"])  # BatchNorm; dropout
def test_bf16_moves_the_gradient_and_f32_on_the_stock_path_does_not(model, capsys):
    assert bg.main(["--models", model, "--batches", "1"]) == 0
    rows = {ln.split("|")[2].strip(): ln for ln in capsys.readouterr().out.splitlines()
            if ln.startswith(f"| {model} |")}
    assert set(rows) == {"f32, stock path", "bf16, fast path", "bf16, stock path"}
    err = {k: float(v.split("|")[3].split()[0]) for k, v in rows.items()}
    assert err["f32, stock path"] < 1e-4 < err["bf16, fast path"] < 1.0
