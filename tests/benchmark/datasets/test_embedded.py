"""patches32 and digits8: the embedded datasets."""
import torch

from benchmark.datasets import build_dataset
from benchmark.datasets.patches32 import TEST_PHOTOS, TRAIN_PHOTOS, load_photo


def test_patches32_shapes_range_and_determinism():
    a = build_dataset("patches32", {"n_train": 64, "n_test": 16, "seed": 3})
    b = build_dataset("patches32", {"n_train": 64, "n_test": 16, "seed": 3})
    c = build_dataset("patches32", {"n_train": 64, "n_test": 16, "seed": 4})
    assert a.train.shape == (64, 3, 32, 32) and a.test.shape == (16, 3, 32, 32)
    assert a.train.dtype == torch.float32 and 0 <= a.train.min() and a.train.max() <= 1
    assert torch.equal(a.train, b.train) and not torch.equal(a.train, c.train)
    assert a.is_image and a.capabilities() == {"image"}


def test_patches32_test_photographs_are_never_used_for_training():
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)
    train_pixels = {tuple(load_photo(p)[:, 0, :8].flatten().tolist()) for p in TRAIN_PHOTOS}
    assert all(tuple(load_photo(p)[:, 0, :8].flatten().tolist()) not in train_pixels for p in TEST_PHOTOS)


def test_digits8_is_the_sklearn_digits_split_without_overlap():
    data = build_dataset("digits8", {})
    assert data.train.shape[1:] == (1, 8, 8)
    assert data.train.shape[0] + data.test.shape[0] == 1797
    assert data.train.max() == 1.0 and data.train.min() == 0.0
    train_rows = {tuple(r.tolist()) for r in data.train.flatten(1)}
    overlap = sum(tuple(r.tolist()) in train_rows for r in data.test.flatten(1))
    assert overlap < 5  # sklearn's digits hold a handful of exact duplicates, no more
