import numpy as np
import pytest
import torch

from benchmark.datasets import build_dataset
from benchmark.errors import UserError

SMALL = dict(kind="superposition", n_atoms=256, dim=64, n_train=500, n_test=300)
TOL = 1e-5  # float32 storage of an exactly constructed float64 dictionary


def build(**params):
    return build_dataset("superposition-test", {**SMALL, **params})


@pytest.fixture(scope="module")
def data():
    return build()


def test_more_atoms_than_dimensions_all_unit_norm_with_cosine_rho_in_each_group(data):
    atoms, groups = data.truth["dictionary"], data.truth["groups"]
    assert atoms.shape == (256, 64)  # superposition: 4 atoms per dimension
    gram = atoms @ atoms.T
    same = (groups[:, None] == groups[None, :]) & ~torch.eye(256, dtype=torch.bool)
    assert torch.allclose(gram.diagonal(), torch.ones(256), atol=TOL)
    assert torch.allclose(gram[same], torch.tensor(0.3), atol=TOL)
    across = gram[groups[:, None] != groups[None, :]].abs()
    # random directions across groups: interference about 1/sqrt(dim), never near-duplicates
    assert 0.5 / 8 < float(across.pow(2).mean().sqrt()) < 2 / 8
    assert float(across.max()) == pytest.approx(data.truth["interference"], abs=TOL) and data.truth["interference"] < 0.7


def test_codes_are_exactly_k_sparse_non_negative_bounded_and_data_is_codes_times_dictionary(data):
    test_codes, train_codes = data.truth["test_codes"], data.truth["train_codes"].to_dense()
    for codes in (train_codes, test_codes):
        assert (codes >= 0).all() and ((codes > 0).sum(1) == 8).all()
        assert codes[codes > 0].min() >= 0.5 and codes[codes > 0].max() <= 1.5
    noise = torch.cat([data.train - train_codes @ data.truth["dictionary"],
                       data.test - test_codes @ data.truth["dictionary"]])
    assert float(noise.std()) == pytest.approx(0.02, rel=0.05) and abs(float(noise.mean())) < 0.002
    assert data.train.shape == (500, 64) and data.test.dtype == torch.float32


def same_group_share(data) -> float:
    """Share of pairs of co-active atoms that belong to one group."""
    active = (data.truth["test_codes"] > 0).float().view(len(data.test), -1, 4).sum(2)  # per group
    k = int((data.truth["test_codes"][0] > 0).sum())
    return float((active * (active - 1)).sum() / (len(data.test) * k * (k - 1)))


def test_cooccurrence_favours_atoms_of_one_group():
    independent, grouped = build(cooccur=0.0), build(cooccur=0.8)
    chance = 3 / 255  # another atom of the same group, drawn uniformly
    assert same_group_share(independent) == pytest.approx(chance, abs=0.01)
    assert same_group_share(grouped) > 10 * chance


def test_every_draw_comes_from_the_seed(data):
    again, other = build(), build(seed=1)
    assert torch.equal(data.train, again.train) and torch.equal(data.truth["dictionary"], again.truth["dictionary"])
    assert not torch.allclose(data.truth["dictionary"], other.truth["dictionary"])
    assert not torch.equal(data.truth["test_codes"] > 0, other.truth["test_codes"] > 0)
    assert data.config["seed"] == 0 and data.config["kind"] == "superposition"


def test_rho_zero_makes_groups_orthogonal_but_not_the_dictionary():
    atoms = build(rho=0.0).truth["dictionary"].double()
    gram = (atoms @ atoms.T).numpy()
    assert np.abs(gram[:4, :4] - np.eye(4)).max() < TOL  # one group: orthonormal
    assert np.abs(gram[:4, 4:]).max() > 0.1  # across groups: superposed


@pytest.mark.parametrize("params, message", [
    (dict(n_atoms=250), "multiple of group_size"), (dict(dim=4), "exceed group_size"),
    (dict(k=200), "k must be"), (dict(rho=1.0), "rho"),
])
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(UserError, match=message):
        build(**params)
