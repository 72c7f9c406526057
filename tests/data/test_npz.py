"""Your own data as an .npz file: the shapes it takes, and the ones it refuses with a reason."""

import numpy as np
import pytest

from pyrovae import DataError
from pyrovae.data import load_npz


def test_images_keep_their_shape_and_points_are_flattened(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", train=rng.integers(0, 256, (6, 4, 8), dtype=np.uint8),
             test=rng.integers(0, 256, (2, 4, 8), dtype=np.uint8))  # fmt: skip
    images = load_npz(tmp_path / "a.npz")
    assert images.image_shape == (1, 4, 8) and images.train.shape == (6, 32) and images.train.dtype == np.uint8
    np.savez(tmp_path / "b.npz", train=np.zeros((3, 12), np.float64), test=np.zeros((1, 12)), image_shape=[3, 2, 2])
    images = load_npz(tmp_path / "b.npz")
    assert images.image_shape == (3, 2, 2) and images.test.dtype == np.float32


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"train": np.zeros(10), "test": np.zeros((2, 5))}, r"train has shape \(10,\); it needs one data point a row"),
        ({"train": np.zeros((0, 5)), "test": np.zeros((2, 5))}, r"train is empty \(shape \(0, 5\)\)"),
        ({"train": np.zeros((2, 5)), "test": np.zeros((2, 0))}, r"test is empty \(shape \(2, 0\)\)"),
        ({"train": np.zeros((2, 5)), "test": np.zeros((2, 4))}, "disagree on the size of a point"),
        ({"train": np.zeros((2, 4)), "test": np.zeros((2, 4)), "image_shape": [2, 2]}, "three positive integers"),
        ({"train": np.array([["a"]]), "test": np.zeros((2, 4))}, "it needs numbers"),
    ],
)
def test_bad_arrays_say_what_is_expected(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_npz(tmp_path / "d.npz")
