import numpy as np
import pytest
import torch

from benchmark.datasets import build_dataset
from benchmark.errors import UserError

SMALL = dict(kind="correlated", n_train=400, n_test=100)
TOL = 1e-5  # float32 storage of an exactly constructed float64 dictionary


def build(**params):
    return build_dataset("correlated-test", {**SMALL, **params})


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.6, 0.9])
def test_within_group_cosine_is_rho_and_groups_are_orthogonal(rho):
    data = build(rho=rho)
    atoms, groups = data.truth["dictionary"], data.truth["groups"]
    gram = atoms @ atoms.T
    same_group = groups[:, None] == groups[None, :]
    off_diagonal = ~torch.eye(len(groups), dtype=torch.bool)
    assert torch.allclose(gram.diagonal(), torch.ones(len(groups)), atol=TOL)
    assert torch.allclose(gram[same_group & off_diagonal], torch.tensor(rho), atol=TOL)
    assert gram[~same_group].abs().max() < TOL


def test_rho_changes_the_dictionary_only_in_its_group_cosine():
    low, high = build(rho=0.3).truth["dictionary"], build(rho=0.6).truth["dictionary"]
    assert not torch.allclose(low, high)
    assert abs(float(low[0] @ low[1]) - float(high[0] @ high[1])) == pytest.approx(0.3, abs=TOL)


def test_codes_are_exactly_k_sparse_non_negative_and_bounded():
    data = build(k=5)
    for codes in (data.truth["train_codes"], data.truth["test_codes"]):
        assert (codes >= 0).all()
        assert ((codes > 0).sum(1) == 5).all()
        active = codes[codes > 0]
        assert active.min() >= 0.5 and active.max() <= 1.5


def test_shapes_dtypes_and_data_equal_codes_times_dictionary_plus_noise():
    data = build(dim=40, noise=0.05)
    assert data.train.shape == (400, 40) and data.test.shape == (100, 40)
    assert data.train.dtype == data.test.dtype == torch.float32
    noise = data.train - data.truth["train_codes"] @ data.truth["dictionary"]
    assert float(noise.std()) == pytest.approx(0.05, rel=0.05)
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.005)


def same_group_share(data) -> float:
    """Share of co-active (sample, atom pair) events whose two atoms share a group."""
    active = (data.truth["train_codes"] > 0).double()
    pairs = active.T @ active
    pairs.fill_diagonal_(0)
    groups = data.truth["groups"]
    return float(pairs[groups[:, None] == groups[None, :]].sum() / pairs.sum())


def test_cooccurrence_favours_features_of_one_group():
    chance = 3 / 31  # 32 atoms in groups of 4: a uniformly chosen partner shares the group
    assert same_group_share(build(cooccur=0.0, n_train=3000)) == pytest.approx(chance, abs=0.015)
    assert same_group_share(build(cooccur=0.5, n_train=3000)) > 3 * chance


def test_deterministic_per_seed():
    a, b, c = build(seed=3), build(seed=3), build(seed=4)
    assert torch.equal(a.train, b.train) and torch.equal(a.truth["test_codes"], b.truth["test_codes"])
    assert not torch.equal(a.train, c.train)
    assert a.config == b.config and a.config["rho"] == 0.0


@pytest.mark.parametrize("params", [dict(rho=1.0), dict(rho=-0.1), dict(dim=30), dict(group_size=5),
                                    dict(k=0), dict(k=33)])
def test_bad_parameters_are_refused_with_a_user_error(params):
    with pytest.raises(UserError):
        build(**params)
