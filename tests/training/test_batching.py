import numpy as np
import pytest

from fedjax_grid.data.base import ArrayDataset, DatasetInfo
from fedjax_grid.errors import UserError
from fedjax_grid.training.batching import as_arrays, num_batches, padded_batches


@pytest.mark.parametrize("n,b", [(1, 4), (4, 4), (10, 4), (17, 5)])
def test_padded_batches_cover_each_row_once_with_fixed_shape(n, b):
    order = np.random.default_rng(0).permutation(n) + 100
    batches = list(padded_batches(order, b))
    assert len(batches) == num_batches(n, b)
    real = np.concatenate([rows[mask == 1] for rows, mask in batches])
    np.testing.assert_array_equal(real, order)
    for rows, mask in batches:
        assert rows.shape == (b,) and mask.shape == (b,) and mask.dtype == np.float32
        assert set(rows[mask == 0]) <= set(order)  # padding repeats real rows


def _dataset(n=12):
    rs = np.random.RandomState(0)
    info = DatasetInfo("toy", 3, ("a", "b", "c"), (4, 4, 1), {"train": n})
    return ArrayDataset(rs.randint(0, 256, (n, 4, 4, 1)).astype(np.uint8), rs.randint(0, 3, n), info)


def test_as_arrays_dataset_and_pair_agree():
    ds = _dataset()
    idx = np.array([5, 1, 7])
    a_img, a_lab = as_arrays(ds, idx)
    b_img, b_lab = as_arrays((ds.images, ds.labels), idx)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert a_img.dtype == np.uint8 and a_lab.dtype == np.int32
    assert as_arrays(ds, [])[0].shape == (0, 4, 4, 1)
    f_img, _ = as_arrays((ds.images.astype(np.float64), ds.labels))
    assert f_img.dtype == np.float32


@pytest.mark.parametrize("bad", [
    "images", (np.zeros((3, 4, 4)), np.zeros(3)), (np.zeros((3, 4, 4, 1)), np.zeros(2)),
    (np.zeros((3, 4, 4, 1)),),
])
def test_as_arrays_rejects_bad_data(bad):
    with pytest.raises(UserError):
        as_arrays(bad)
