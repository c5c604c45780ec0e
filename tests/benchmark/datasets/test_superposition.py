import numpy as np
import pytest
import torch

from benchmark.datasets import build_dataset
from benchmark.datasets.superposition import GROUP_RETRIES, mix, sparse_supports
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


def one_row_at_a_time(n, n_atoms, group_size, k, cooccur, rng):
    """The supports' definition, written plainly: every try draws for all n rows, and a row takes
    its try's candidate while it has none that is free (the sampler works only on those rows)."""
    support = np.empty((n, k), dtype=np.int64)
    support[:, 0] = rng.integers(n_atoms, size=n)
    for j in range(1, k):
        chosen, from_group, attempt = np.full(n, -1), rng.random(n) < cooccur, 0
        while (chosen < 0).any():
            anchor_pick, partner_pick, uniform = (rng.integers(j, size=n), rng.integers(group_size, size=n),
                                                  rng.integers(n_atoms, size=n))
            for row in np.flatnonzero(chosen < 0):
                anchor = support[row, anchor_pick[row]]
                partner = anchor // group_size * group_size + partner_pick[row]
                candidate = partner if from_group[row] and attempt < GROUP_RETRIES else uniform[row]
                if candidate not in support[row, :j]:
                    chosen[row] = candidate
            attempt += 1
        support[:, j] = chosen
    return support


@pytest.mark.parametrize("n, n_atoms, k, cooccur", [(300, 64, 8, 0.5), (50, 16, 8, 0.9), (200, 256, 3, 0.0)])
def test_supports_are_the_definitions_draws_and_mix_is_the_codes_product(n, n_atoms, k, cooccur):
    support = sparse_supports(n, n_atoms, 4, k, cooccur, np.random.default_rng(7))
    assert np.array_equal(support, one_row_at_a_time(n, n_atoms, 4, k, cooccur, np.random.default_rng(7)))
    assert not np.array_equal(support, one_row_at_a_time(n, n_atoms, 4, k, cooccur, np.random.default_rng(8)))
    assert all(len(set(row)) == k for row in support)
    rng = np.random.default_rng(0)
    values, dictionary = rng.uniform(0.5, 1.5, size=support.shape), rng.standard_normal((n_atoms, 12))
    codes = np.zeros((n, n_atoms))
    np.put_along_axis(codes, support, values, axis=1)
    assert np.allclose(mix(support, values, dictionary), codes @ dictionary, rtol=0, atol=1e-12)
    assert not np.allclose(mix(support, values[:, ::-1], dictionary), codes @ dictionary)


@pytest.mark.parametrize("params, message", [
    (dict(n_atoms=250), "multiple of group_size"), (dict(dim=4), "exceed group_size"),
    (dict(k=200), "k must be"), (dict(rho=1.0), "rho"),
])
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(UserError, match=message):
        build(**params)
