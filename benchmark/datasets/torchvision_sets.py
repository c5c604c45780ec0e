"""`cifar10` and `mnist` through torchvision, from `--data-root`, fetched only with `--download`."""
from pathlib import Path

import numpy as np
import torch

from benchmark.data import Dataset
from benchmark.errors import UserError
from benchmark.registry import DATASETS

DEFAULT_ROOT = Path("data")


def _open(cls_name: str, name: str, data_root, download: bool, train: bool):
    import torchvision  # lazily: importing it costs seconds, and most runs never need it

    cls = getattr(torchvision.datasets, cls_name)
    root = Path(data_root) if data_root else DEFAULT_ROOT
    try:
        return cls(root=str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted..."
        if download:
            raise UserError(f"{name}: download into {root} failed ({err})") from None
        raise UserError(
            f"{name} not found under {root}: pass --download to fetch it, or --data-root DIR "
            f"pointing at an existing copy"
        ) from None
    except OSError as err:  # no network during --download
        raise UserError(f"{name}: could not download into {root} ({err})") from None


def _subset(x: torch.Tensor, n: int | None) -> torch.Tensor:
    return x if n is None else x[:n]


def _images(data) -> torch.Tensor:
    """torchvision keeps uint8 arrays: (N, H, W, 3) for CIFAR-10, (N, H, W) for MNIST."""
    array = np.asarray(data)
    tensor = torch.from_numpy(array).float() / 255.0
    return tensor.permute(0, 3, 1, 2).contiguous() if tensor.ndim == 4 else tensor.unsqueeze(1)


def _build(cls_name, kind, name, data_root, download, n_train, n_test):
    train = _open(cls_name, kind, data_root, download, train=True)
    test = _open(cls_name, kind, data_root, download, train=False)
    return Dataset(
        name=name,
        train=_subset(_images(train.data), n_train),
        test=_subset(_images(test.data), n_test),
        config=dict(kind=kind, n_train=n_train, n_test=n_test),
        truth={"train_labels": _subset(torch.as_tensor(train.targets), n_train),
               "test_labels": _subset(torch.as_tensor(test.targets), n_test)},
    )


@DATASETS.register("cifar10")
def build_cifar10(name, *, data_root=None, download=False, n_train=None, n_test=None):
    return _build("CIFAR10", "cifar10", name, data_root, download, n_train, n_test)


@DATASETS.register("mnist")
def build_mnist(name, *, data_root=None, download=False, n_train=None, n_test=None):
    return _build("MNIST", "mnist", name, data_root, download, n_train, n_test)
