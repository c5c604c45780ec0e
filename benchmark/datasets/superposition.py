"""`superposition`: x = z·D + noise with more true unit-norm atoms than dimensions (e.g. 512 in
128), in correlated groups, with sparse non-negative codes: the regime MP-SAE is about, where
`correlated` (every atom orthogonal to every other group) has no superposition at all.

Dictionary: `n_atoms / group_size` groups. Each group draws, from one Gaussian matrix made
orthonormal by QR, a shared direction u_g and `group_size` private directions v_i orthogonal to
u_g and to each other; atom i = sqrt(rho)·u_g + sqrt(1-rho)·v_i. So atoms have unit norm, two
atoms of one group have cosine exactly `rho`, and atoms of different groups are independent
random directions: their cosines are the interference of superposition, about ±1/sqrt(dim)
(max |cosine| across groups is in `truth["interference"]`). Needs dim > group_size.

Codes: exactly k active atoms per sample, drawn one at a time: the first uniformly; each next
one, with probability `cooccur`, a not-yet-active atom from the group of an already active one
(picked at random among the active atoms), else uniformly among inactive atoms. Active values
are uniform in [0.5, 1.5]. Drawn as (n, k) index arrays, never as dense (n, n_atoms) masks, so
thousands of atoms stay cheap.

Every draw (dictionary, codes, noise) comes from `seed`: first the dictionary, then the fixed test
split; training samples are a stream (`_synthetic.DictionaryStream`) of fresh codes and noise on
the same dictionary from a generator of its own, and `train` is its first `n_train` samples.
truth: dictionary (n_atoms, dim),
groups (n_atoms,), interference, test_codes (n_test, n_atoms) dense, train_codes
(n_train, n_atoms) as a sparse COO tensor (dense it would be n_train·n_atoms floats).
"""
from functools import partial

import numpy as np
import scipy.sparse
import torch

from benchmark.data import Dataset
from benchmark.datasets._synthetic import (CODE_RANGE, DictionaryStream, check_cosine, check_group_size, draw,
                                          take)
from benchmark.errors import UserError
from benchmark.registry import DATASETS

GROUP_RETRIES = 20  # tries at a free atom of an active group before drawing uniformly (the group may be full)


def grouped_superposed_dictionary(n_groups: int, group_size: int, dim: int, rho: float, rng) -> np.ndarray:
    """(n_groups·group_size, dim) unit atoms, cosine exactly rho within a group, random across."""
    q, r = np.linalg.qr(rng.standard_normal((n_groups, dim, group_size + 1)))  # batched QR
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]  # sign fix: deterministic per seed
    shared, private = q[:, :, :1], q[:, :, 1:]  # (n_groups, dim, 1), (n_groups, dim, group_size)
    atoms = np.sqrt(rho) * shared + np.sqrt(1.0 - rho) * private
    return atoms.transpose(0, 2, 1).reshape(n_groups * group_size, dim)


def sparse_supports(n: int, n_atoms: int, group_size: int, k: int, cooccur: float, rng) -> np.ndarray:
    """(n, k) distinct atom indices per row; later picks favour the groups already active."""
    support = np.empty((n, k), dtype=np.int64)
    support[:, 0] = rng.integers(n_atoms, size=n)
    for j in range(1, k):
        from_group = rng.random(n) < cooccur
        todo = np.arange(n)  # the rows still without a free j-th atom
        attempt = 0
        while len(todo):  # rejection: k <= n_atoms / 2, so a uniform draw is free often
            # Every try draws for all n rows, so the draws (and the data) do not depend on which
            # rows are left; only those rows are worked on (most tries leave a handful).
            anchor_pick, partner_pick, uniform = (rng.integers(j, size=n), rng.integers(group_size, size=n),
                                                  rng.integers(n_atoms, size=n))
            anchor = support[todo, anchor_pick[todo]]  # a random already-active atom
            partner = anchor // group_size * group_size + partner_pick[todo]
            grouped = from_group[todo] & (attempt < GROUP_RETRIES)
            candidate = np.where(grouped, partner, uniform[todo])
            free = (support[todo, :j] != candidate[:, None]).all(1)
            support[todo[free], j] = candidate[free]
            todo = todo[~free]
            attempt += 1
    return support


def mix(support: np.ndarray, values: np.ndarray, dictionary: np.ndarray) -> np.ndarray:
    """Σ_j values[:, j]·D[support[:, j]] as a sparse (n, n_atoms) by dense product: memory
    O(n·dim), never an (n, k, dim) gather, and each row summed in j order, as a loop would."""
    n, k = support.shape
    codes = scipy.sparse.csr_array((values.ravel(), support.ravel(), np.arange(0, n * k + 1, k)),
                                   shape=(n, len(dictionary)))
    return codes @ dictionary


def sparse_sample(n: int, rng, dictionary: np.ndarray, group_size: int, k: int, cooccur: float) -> tuple:
    """The code sampler of the stream and the test split: (codes·D, support (n, k), values (n, k))."""
    support = sparse_supports(n, len(dictionary), group_size, k, cooccur, rng)
    values = rng.uniform(*CODE_RANGE, size=support.shape)
    return mix(support, values, dictionary), support, values


def sparse_codes(support: np.ndarray, values: np.ndarray, n_atoms: int) -> torch.Tensor:
    rows = np.repeat(np.arange(len(support)), support.shape[1])
    indices = torch.tensor(np.stack([rows, support.ravel()]))
    shape = (len(support), n_atoms)
    values = torch.tensor(values.ravel(), dtype=torch.float32)
    return torch.sparse_coo_tensor(indices, values, shape, check_invariants=True).coalesce()


def max_cross_group_cosine(dictionary: np.ndarray, groups: np.ndarray, chunk: int = 2048) -> float:
    worst = 0.0
    for lo in range(0, len(dictionary), chunk):
        gram = np.abs(dictionary[lo : lo + chunk] @ dictionary.T)
        gram[groups[lo : lo + chunk, None] == groups[None, :]] = 0.0
        worst = max(worst, float(gram.max()))
    return worst


@DATASETS.register("superposition")
def build(name, *, data_root=None, download=False, n_atoms=512, dim=128, group_size=4, rho=0.3, k=8,
          cooccur=0.5, noise=0.02, n_train=8000, n_test=1000, seed=0):
    check_cosine(rho, "superposition: rho")
    check_group_size(n_atoms, group_size, "superposition")
    if dim <= group_size:
        raise UserError(f"superposition: dim ({dim}) must exceed group_size ({group_size})")
    if not 1 <= k <= n_atoms // 2:
        raise UserError(f"superposition: k must be between 1 and n_atoms / 2 ({n_atoms // 2}), got {k}")
    rng = np.random.default_rng(seed)
    dictionary = grouped_superposed_dictionary(n_atoms // group_size, group_size, dim, rho, rng)
    groups = np.arange(n_atoms) // group_size
    sample = partial(sparse_sample, group_size=group_size, k=k, cooccur=cooccur)
    test, test_support, test_values = draw(sample, dictionary, noise, n_test, rng)
    stream = DictionaryStream(sample, dictionary, noise, seed)
    train, train_support, train_values = take(stream.chunks(), n_train)
    config = dict(kind="superposition", n_atoms=n_atoms, dim=dim, group_size=group_size, rho=rho, k=k,
                  cooccur=cooccur, noise=noise, n_train=n_train, n_test=n_test, seed=seed)
    truth = dict(
        dictionary=torch.tensor(dictionary, dtype=torch.float32),
        groups=torch.tensor(groups),
        interference=max_cross_group_cosine(dictionary, groups),
        train_codes=sparse_codes(train_support, train_values, n_atoms),
        test_codes=sparse_codes(test_support, test_values, n_atoms).to_dense(),
    )
    return Dataset(name=name, train=train, test=test, config=config, truth=truth, stream=stream)
