"""Shared pieces of the synthetic dictionary datasets (`correlated`, `tree`, `superposition`):
x = z·D + noise with a known unit-norm dictionary D and known non-negative codes z, both kept in
`truth`."""
import numpy as np
import torch

from benchmark.data import Dataset
from benchmark.errors import UserError

# Active codes are drawn uniformly from this range: bounded away from zero, so that "this
# feature is active" stays well defined under the additive noise (support_f1 relies on it).
CODE_RANGE = (0.5, 1.5)


def orthonormal_rows(n: int, dim: int, rng: np.random.Generator, what: str) -> np.ndarray:
    """(n, dim) float64 rows that are exactly orthonormal (QR of a Gaussian matrix)."""
    if n > dim:
        raise UserError(f"{what} needs {n} orthogonal directions but dim is {dim}; raise dim to at least {n}")
    q, r = np.linalg.qr(rng.standard_normal((dim, n)))
    return (q * np.sign(np.diag(r))).T  # sign fix: the same seed gives the same basis everywhere


def mixed_atoms(shared: np.ndarray, private: np.ndarray, cosine: float) -> np.ndarray:
    """sqrt(c)·shared + sqrt(1-c)·private: with shared ⟂ private, all unit norm, two atoms that
    share `shared` have cosine exactly c."""
    return np.sqrt(cosine) * shared + np.sqrt(1.0 - cosine) * private


def check_group_size(n_atoms: int, group_size: int, what: str) -> None:
    if n_atoms % group_size:
        raise UserError(f"{what}: n_atoms ({n_atoms}) must be a multiple of group_size ({group_size})")


def check_cosine(value: float, what: str) -> None:
    if not 0.0 <= value < 1.0:
        raise UserError(f"{what} must be in [0, 1) (1 would make atoms identical), got {value}")


def magnitudes(active: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Non-negative codes: uniform in CODE_RANGE where `active`, zero elsewhere."""
    return np.where(active, rng.uniform(*CODE_RANGE, size=active.shape), 0.0)


def dictionary_dataset(name: str, dictionary: np.ndarray, codes: np.ndarray, n_train: int,
                       noise: float, rng: np.random.Generator, config: dict, **truth) -> Dataset:
    """x = codes·D + N(0, noise²) per coordinate; the first n_train samples train, the rest test."""
    x = codes @ dictionary + noise * rng.standard_normal((codes.shape[0], dictionary.shape[1]))
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    x, codes = as_tensor(x), as_tensor(codes)
    return Dataset(
        name=name,
        train=x[:n_train],
        test=x[n_train:],
        config=config,
        truth=dict(dictionary=as_tensor(dictionary), train_codes=codes[:n_train],
                   test_codes=codes[n_train:], **truth),
    )
