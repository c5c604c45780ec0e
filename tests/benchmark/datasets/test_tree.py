import pytest
import torch

from benchmark.datasets import build_dataset
from benchmark.datasets.tree import N_FEATURES
from benchmark.errors import UserError

TOL = 1e-5


def build(**params):
    return build_dataset("tree", {"n_train": 2000, "n_test": 200, **params})


def families(data):
    parent_of = data.truth["parent_of"]
    parents = [int(p) for p in parent_of.unique() if p >= 0]
    return {p: torch.nonzero(parent_of == p).flatten().tolist() for p in parents}


def test_twenty_features_three_parents_of_three_children_and_eight_leaves():
    data = build()
    assert N_FEATURES == 20 and data.truth["dictionary"].shape == (20, 32)
    kids = families(data)
    assert sorted(kids) == [0, 1, 2] and all(len(c) == 3 for c in kids.values())
    leaves = [f for f in range(20) if f not in kids and data.truth["parent_of"][f] < 0]
    assert len(leaves) == 8


@pytest.mark.parametrize("sibling_cos", [0.0, 0.4, 0.8])
def test_parents_orthogonal_to_their_children_and_siblings_at_the_set_cosine(sibling_cos):
    data = build(sibling_cos=sibling_cos)
    atoms = data.truth["dictionary"]
    gram = atoms @ atoms.T
    assert torch.allclose(gram.diagonal(), torch.ones(20), atol=TOL)
    for parent, children in families(data).items():
        assert gram[parent, children].abs().max() < TOL
        for i in children:
            for j in children:
                if i != j:
                    assert float(gram[i, j]) == pytest.approx(sibling_cos, abs=TOL)


def test_children_fire_only_with_their_parent_and_at_most_one_at_a_time():
    data = build()
    active = data.truth["train_codes"] > 0
    for parent, children in families(data).items():
        assert not (active[:, children].any(1) & ~active[:, parent]).any()
        assert (active[:, children].sum(1) <= 1).all()
        # given the parent, a child fires with probability child_prob = 0.8
        rate = active[active[:, parent]][:, children].any(1).double().mean()
        assert float(rate) == pytest.approx(0.8, abs=0.06)
    assert (data.truth["train_codes"] >= 0).all()


def test_deterministic_per_seed_and_float32():
    a, b, c = build(seed=1), build(seed=1), build(seed=2)
    assert torch.equal(a.train, b.train) and not torch.equal(a.train, c.train)
    assert a.train.dtype == torch.float32 and a.test.shape == (200, 32)


def test_too_small_dim_is_refused():
    with pytest.raises(UserError):
        build(dim=20)
