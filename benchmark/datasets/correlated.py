"""`correlated`: x = z·D + noise from a known unit-norm dictionary D whose atoms come in groups
with within-group cosine exactly `rho`, and k-sparse non-negative codes z whose active features
tend to come from the same group (co-occurrence). The MP-SAE paper's question: do shallow SAEs
fail on correlated atoms?

Construction of D: an exactly orthonormal basis supplies one shared direction u_g per group and
one private direction v_i per atom; atom i of group g is sqrt(rho)·u_g + sqrt(1-rho)·v_i. So
every atom has unit norm, two atoms of one group have cosine exactly rho, and atoms of different
groups are exactly orthogonal (float32 storage: equal to within 1e-6). It needs
dim >= n_atoms + n_atoms / group_size.

Codes: exactly k active features per sample, drawn one at a time: the first uniformly; each next
one, with probability `cooccur`, from the not-yet-active atoms of an already active group, else
uniformly from all inactive atoms. Active values are uniform in [0.5, 1.5].

Draws: `seed` makes the dictionary, then the fixed test split; training samples are a stream
(`_synthetic.DictionaryStream`) of fresh codes and noise on the same dictionary from a generator
of its own, and `train` is its first `n_train` samples.

truth: dictionary (n_atoms, dim), train_codes / test_codes (N, n_atoms), groups (n_atoms,).
"""
from functools import partial

import numpy as np
import torch

from benchmark.datasets._synthetic import (check_cosine, check_group_size, dense_codes, dictionary_dataset,
                                          mixed_atoms, orthonormal_rows)
from benchmark.errors import UserError
from benchmark.registry import DATASETS


def grouped_dictionary(n_atoms: int, dim: int, group_size: int, rho: float, rng) -> np.ndarray:
    """(n_atoms, dim): unit atoms, cosine rho within a group, orthogonal across groups."""
    n_groups = n_atoms // group_size
    basis = orthonormal_rows(n_groups + n_atoms, dim, rng, f"correlated ({n_atoms} atoms in {n_groups} groups)")
    shared = basis[:n_groups][np.arange(n_atoms) // group_size]
    return mixed_atoms(shared, basis[n_groups:], rho)


def cooccurring_supports(n: int, groups: np.ndarray, k: int, cooccur: float, rng) -> np.ndarray:
    """(n, n_atoms) bool, exactly k True per row, features of one group favoured together."""
    n_atoms = len(groups)
    rows = np.arange(n)
    active = np.zeros((n, n_atoms), dtype=bool)
    active[rows, rng.integers(n_atoms, size=n)] = True
    group_onehot = np.eye(groups.max() + 1, dtype=bool)[groups]  # (n_atoms, n_groups)
    for _ in range(k - 1):
        in_active_group = (active.astype(np.int64) @ group_onehot)[:, groups] > 0
        partners = in_active_group & ~active
        from_group = (rng.random(n) < cooccur) & partners.any(1)
        candidates = np.where(from_group[:, None], partners, ~active)
        # A uniform pick among each row's candidates: the largest uniform score wins.
        active[rows, np.where(candidates, rng.random((n, n_atoms)), -1.0).argmax(1)] = True
    return active


@DATASETS.register("correlated")
def build(name, *, data_root=None, download=False, rho=0.0, n_atoms=32, dim=48, group_size=4, k=4,
          cooccur=0.5, noise=0.02, n_train=4000, n_test=1000, seed=0):
    check_cosine(rho, "correlated: rho")
    check_group_size(n_atoms, group_size, "correlated")
    if not 1 <= k <= n_atoms:
        raise UserError(f"correlated: k must be between 1 and n_atoms ({n_atoms}), got {k}")
    rng = np.random.default_rng(seed)
    dictionary = grouped_dictionary(n_atoms, dim, group_size, rho, rng)
    groups = np.arange(n_atoms) // group_size
    sample = partial(dense_codes, supports=partial(cooccurring_supports, groups=groups, k=k, cooccur=cooccur))
    config = dict(kind="correlated", rho=rho, n_atoms=n_atoms, dim=dim, group_size=group_size, k=k,
                  cooccur=cooccur, noise=noise, n_train=n_train, n_test=n_test, seed=seed)
    return dictionary_dataset(name, dictionary, sample, n_train, n_test, noise, rng, seed, config,
                              groups=torch.tensor(groups))
