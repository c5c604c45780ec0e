"""cifar10 and mnist load through torchvision from files written here in the real on-disk
formats (CIFAR-10's pickled batches, MNIST's idx files)."""
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.datasets import build_dataset
from benchmark.errors import UserError


def write_cifar10(root, n_per_batch=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": i for i in range(1, 6)} | {"test_batch": 0}
    for name, fill in batches.items():
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        data[0, :] = fill * 40  # a known pixel value per batch
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": list(range(n_per_batch))}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)


def write_idx(path, array: np.ndarray):
    code = 0x08  # unsigned byte
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root, n_train=6, n_test=3):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(n_train * 28 * 28).reshape(n_train, 28, 28) % 256
    write_idx(raw / "train-images-idx3-ubyte", images)
    write_idx(raw / "train-labels-idx1-ubyte", np.arange(n_train) % 10)
    write_idx(raw / "t10k-images-idx3-ubyte", images[:n_test])
    write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(n_test) % 10)


@pytest.fixture
def no_md5(monkeypatch):
    """torchvision checks CIFAR-10's files against the real archive's MD5 sums, which tiny files
    cannot match; everything else (paths, pickle format, decoding) runs as it would."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))


def test_cifar10_loads_from_the_real_on_disk_format(tmp_path, no_md5):
    write_cifar10(tmp_path)
    data = build_dataset("cifar10", {}, data_root=tmp_path)
    assert data.train.shape == (20, 3, 32, 32) and data.test.shape == (4, 3, 32, 32)
    assert data.train.dtype == torch.float32 and data.train.max() <= 1
    assert torch.allclose(data.train[0], torch.full((3, 32, 32), 40 / 255))  # data_batch_1's marker
    assert torch.allclose(data.test[0], torch.zeros(3, 32, 32))
    subset = build_dataset("cifar10", {"n_train": 7, "n_test": 2}, data_root=tmp_path)
    assert subset.train.shape[0] == 7 and subset.test.shape[0] == 2


def test_mnist_loads_from_idx_files(tmp_path):
    write_mnist(tmp_path)
    data = build_dataset("mnist", {}, data_root=tmp_path)
    assert data.train.shape == (6, 1, 28, 28) and data.test.shape == (3, 1, 28, 28)
    expected = torch.arange(28 * 28).reshape(28, 28) % 256 / 255.0
    assert torch.allclose(data.train[0, 0], expected.float())
    assert data.truth["train_labels"].tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_missing_copy_names_the_download_flag(tmp_path, name):
    with pytest.raises(UserError, match="--download"):
        build_dataset(name, {}, data_root=tmp_path / "empty")


def test_missing_dataset_in_a_run_exits_2_and_writes_nothing(tmp_path, capsys):
    preset = tmp_path / "p.yaml"
    preset.write_text("seeds: [0]\ntrain: {epochs: 1, batch_size: 8, lr: 0.001}\n"
                      "datasets: {mnist: {}}\ntasks: {sparsity: {datasets: [mnist]}}\n")
    out = tmp_path / "out"
    code = main(["run", "--all", "--preset", str(preset), "--out", str(out),
                 "--data-root", str(tmp_path / "nothing"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--download" in err and "Traceback" not in err
    assert not (out / "results.csv").exists()
