"""The digits read without scikit-learn's import are scikit-learn's digits, split as before."""
import subprocess
import sys

import numpy as np

from fedjax_grid.data import digits


def test_digits_file_read_directly_equals_load_digits():
    from sklearn.datasets import load_digits
    bunch = load_digits()
    images, target = digits.raw_digits()
    assert images.dtype == bunch.images.dtype and target.dtype == bunch.target.dtype
    np.testing.assert_array_equal(images, bunch.images)
    np.testing.assert_array_equal(target, bunch.target)


def test_stored_split_equals_sklearn_stratified_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    labels = load_digits().target
    train, test = train_test_split(np.arange(len(labels)), test_size=digits.TEST_FRACTION,
                                   stratify=labels, random_state=digits.SPLIT_SEED)
    split = digits.split_indices()
    assert split["train"].dtype == np.sort(train).dtype
    np.testing.assert_array_equal(split["train"], np.sort(train))
    np.testing.assert_array_equal(split["test"], np.sort(test))
    assert len(split["train"]) == 1437 and len(split["test"]) == 360


def test_loading_digits_does_not_import_sklearn():
    code = ("import sys; from fedjax_grid.data.digits import load; ds = load('train'); "
            "print(len(ds), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["1437", "False"]
