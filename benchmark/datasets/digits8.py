"""`digits8`: scikit-learn's bundled handwritten digits (1797 images, 8×8), a stand-in for MNIST."""
import torch
from sklearn.datasets import load_digits

from benchmark.data import Dataset, split_indices
from benchmark.registry import DATASETS


@DATASETS.register("digits8")
def build(name, *, data_root=None, download=False, test_fraction=0.2, seed=0):
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # pixels 0..16
    train_idx, test_idx = split_indices(len(images), test_fraction, seed)
    return Dataset(
        name=name,
        train=images[train_idx],
        test=images[test_idx],
        config=dict(kind="digits8", test_fraction=test_fraction, seed=seed),
        truth={"train_labels": torch.tensor(digits.target)[train_idx],
               "test_labels": torch.tensor(digits.target)[test_idx]},
    )
