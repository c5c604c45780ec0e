"""`tree`: the MP-SAE hierarchical toy. 20 features: 3 parents with 3 children each, and 8
independent leaves; x = z·D + noise, with the true dictionary and codes kept in `truth`.

Dictionary (unit-norm atoms, from an exactly orthonormal basis): parent p is its own basis
direction; child c of parent p is sqrt(s)·u_p + sqrt(1-s)·v_c, with u_p a direction shared by
p's children and v_c private. So children are orthogonal to their own parent (and to everything
outside their family), and siblings have cosine exactly s = `sibling_cos`. Leaves are further
basis directions. Needs dim >= 23.

Codes (non-negative, values uniform in [0.5, 1.5] when active): each parent fires with
probability `parent_prob`; when it fires, one of its children, chosen uniformly, fires with
probability `child_prob`; a child never fires without its parent. Leaves fire independently with
probability `leaf_prob`.

Draws: `seed` makes the dictionary, then the fixed test split; training samples are a stream
(`_synthetic.DictionaryStream`) of fresh codes and noise on the same dictionary from a generator
of its own, and `train` is its first `n_train` samples.

Feature order: parents 0..2, children 3..11 (children of parent p: 3+3p .. 5+3p), leaves 12..19.
truth: dictionary (20, dim), train_codes / test_codes (N, 20), parent_of (20,), -1 for roots.
"""
from functools import partial

import numpy as np
import torch

from benchmark.datasets._synthetic import check_cosine, dense_codes, dictionary_dataset, mixed_atoms, orthonormal_rows
from benchmark.registry import DATASETS

N_PARENTS, N_CHILDREN, N_LEAVES = 3, 3, 8  # children per parent
N_FEATURES = N_PARENTS * (1 + N_CHILDREN) + N_LEAVES


def parent_index() -> np.ndarray:
    """(N_FEATURES,): the parent of each feature, -1 for parents and leaves."""
    parent_of = np.full(N_FEATURES, -1)
    parent_of[N_PARENTS : N_PARENTS * (1 + N_CHILDREN)] = np.repeat(np.arange(N_PARENTS), N_CHILDREN)
    return parent_of


def tree_dictionary(dim: int, sibling_cos: float, rng) -> np.ndarray:
    n_children = N_PARENTS * N_CHILDREN
    basis = orthonormal_rows(N_PARENTS * 2 + n_children + N_LEAVES, dim, rng, "tree")
    parents, sibling_shared = basis[:N_PARENTS], basis[N_PARENTS : 2 * N_PARENTS]
    private, leaves = basis[2 * N_PARENTS : 2 * N_PARENTS + n_children], basis[2 * N_PARENTS + n_children :]
    children = mixed_atoms(np.repeat(sibling_shared, N_CHILDREN, axis=0), private, sibling_cos)
    return np.concatenate([parents, children, leaves])


def tree_supports(n: int, parent_prob: float, child_prob: float, leaf_prob: float, rng) -> np.ndarray:
    """(n, N_FEATURES) bool: parents, at most one child per firing parent, independent leaves."""
    parents = rng.random((n, N_PARENTS)) < parent_prob
    with_child = parents & (rng.random((n, N_PARENTS)) < child_prob)
    which_child = rng.integers(N_CHILDREN, size=(n, N_PARENTS))
    children = (np.arange(N_CHILDREN) == which_child[..., None]) & with_child[..., None]
    leaves = rng.random((n, N_LEAVES)) < leaf_prob
    return np.concatenate([parents, children.reshape(n, -1), leaves], axis=1)


@DATASETS.register("tree")
def build(name, *, data_root=None, download=False, sibling_cos=0.5, dim=32, parent_prob=0.3,
          child_prob=0.8, leaf_prob=0.15, noise=0.02, n_train=4000, n_test=1000, seed=0):
    check_cosine(sibling_cos, "tree: sibling_cos")
    rng = np.random.default_rng(seed)
    dictionary = tree_dictionary(dim, sibling_cos, rng)
    sample = partial(dense_codes, supports=partial(tree_supports, parent_prob=parent_prob, child_prob=child_prob,
                                                   leaf_prob=leaf_prob))
    config = dict(kind="tree", sibling_cos=sibling_cos, dim=dim, parent_prob=parent_prob,
                  child_prob=child_prob, leaf_prob=leaf_prob, noise=noise, n_train=n_train,
                  n_test=n_test, seed=seed)
    return dictionary_dataset(name, dictionary, sample, n_train, n_test, noise, rng, seed, config,
                              parent_of=torch.tensor(parent_index()))
