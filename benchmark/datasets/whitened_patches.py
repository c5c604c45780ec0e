"""`whitened_patches`: small RGB crops (8×8 by default: 192 dimensions) of the photographs that
`patches32` uses, ZCA-whitened with the training split's statistics: the classic sparse-coding
regime (Olshausen & Field; Coates & Ng) in which localised, oriented atoms emerge.

- Crops: the photographs are downscaled so their short side is `short_side` pixels (averaging
  away sensor noise and the 8×8 JPEG blocks of the two .jpg photographs, which would otherwise
  line up with 8×8 crops), then cut at uniform random positions drawn from `seed`. Test crops
  come from `patches32.photo_split(seed)`'s held-out photographs, never used for training.
- ZCA: with μ the training split's mean crop and Σ = U diag(λ) Uᵀ its covariance (rows
  flattened C·H·W), W = U diag((λ + ε)^-½) Uᵀ and x_white = (x − μ) W, the same μ and W on
  the test split. ε = `epsilon` × mean(λ) (relative, so it does not depend on the pixel scale)
  keeps the low-variance, mostly-noise components from being blown up: the whitened
  covariance has eigenvalues λ / (λ + ε), ≈ 1 on the components with λ ≫ ε and < 1 below.
  ZCA (rather than PCA whitening) keeps every dimension at its pixel, so whitened crops and
  atoms are still pictures on the C×H×W grid and image variants (`tensor`, `conv`) run on them.

Whitened values are not in [0, 1]. Pixel space is the inverse transform, x = x_white W⁻¹ + μ
(`to_pixels`), exact since W is invertible. `truth` holds `whitened` (True), `whitening` (W),
`unwhitening` (W⁻¹), `mean` (μ, flattened), `eigenvalues` (λ, descending), `epsilon_abs` (ε)
and `pixel_space` (that formula in words); a task that works in pixels (e.g. `intervention`,
which clamps to [0, 1]) maps through it.
"""
from functools import lru_cache

import torch

from benchmark.data import Dataset
from benchmark.datasets.patches32 import downscale, load_photo, photo_split, random_crops
from benchmark.registry import DATASETS

PIXEL_SPACE = "pixels = whitened.flatten(1) @ unwhitening + mean, reshaped to (N, C, H, W)"


@lru_cache(maxsize=4)
def downscaled_photos(names: tuple[str, ...], short_side: int) -> tuple[torch.Tensor, ...]:
    """The photographs, downscaled; cached because every seed of a run crops the same ones
    (callers only read them: `random_crops` copies)."""
    return tuple(downscale(load_photo(p), short_side) for p in names)


def zca(train: torch.Tensor, epsilon: float) -> dict:
    """ZCA statistics of the rows of `train` (N, D), computed in float64: mean, W, W⁻¹, λ, ε."""
    x = train.double()
    mean = x.mean(0)
    centred = x - mean
    eigenvalues, vectors = torch.linalg.eigh(centred.T @ centred / x.shape[0])
    eigenvalues, vectors = eigenvalues.flip(0).clamp_min(0), vectors.flip(1)  # descending; no -0 noise
    eps = epsilon * float(eigenvalues.mean())
    scale = (eigenvalues + eps).sqrt()
    return {
        "mean": mean,
        "whitening": (vectors / scale) @ vectors.T,  # U diag(1/√(λ+ε)) Uᵀ, symmetric
        "unwhitening": (vectors * scale) @ vectors.T,  # U diag(√(λ+ε)) Uᵀ, its inverse
        "eigenvalues": eigenvalues,
        "epsilon_abs": eps,
    }


def whiten(images: torch.Tensor, stats: dict) -> torch.Tensor:
    """(N, C, H, W) pixels -> (N, C, H, W) whitened, float32."""
    flat = (images.flatten(1).double() - stats["mean"]) @ stats["whitening"]
    return flat.float().view_as(images)


def is_whitened(dataset: Dataset) -> bool:
    return bool(dataset.truth.get("whitened", False))


def to_pixels(x: torch.Tensor, truth: dict, shift: bool = True) -> torch.Tensor:
    """Whitened (N, C, H, W) -> pixel space, on x's device and dtype. `shift=False` maps a
    difference (an edit, an atom): W⁻¹ only, without adding the mean."""
    unwhitening = truth["unwhitening"].to(x.device, x.dtype)
    flat = x.flatten(1) @ unwhitening
    if shift:
        flat = flat + truth["mean"].to(x.device, x.dtype)
    return flat.view_as(x)


def pixel_map(dataset: Dataset):
    """The function that takes the model's output space to pixels: identity, or `to_pixels`."""
    if not is_whitened(dataset):
        return lambda x, shift=True: x
    return lambda x, shift=True: to_pixels(x, dataset.truth, shift)


@DATASETS.register("whitened_patches")
def build(name, *, data_root=None, download=False, size=8, n_train=20000, n_test=2000,
          short_side=256, epsilon=0.01, seed=0):
    generator = torch.Generator().manual_seed(seed)
    train_names, test_names = photo_split(seed)  # the seed also picks the held-out photographs
    train = random_crops(downscaled_photos(train_names, short_side), n_train, size, generator)
    test = random_crops(downscaled_photos(test_names, short_side), n_test, size, generator)
    stats = zca(train.flatten(1), epsilon)
    truth = {
        "whitened": True,
        "pixel_space": PIXEL_SPACE,
        "whitening": stats["whitening"].float(),
        "unwhitening": stats["unwhitening"].float(),
        "mean": stats["mean"].float(),
        "eigenvalues": stats["eigenvalues"].float(),
        "epsilon_abs": stats["epsilon_abs"],
    }
    return Dataset(
        name=name,
        train=whiten(train, stats),
        test=whiten(test, stats),
        config=dict(kind="whitened_patches", size=size, n_train=n_train, n_test=n_test,
                    short_side=short_side, epsilon=epsilon, seed=seed),
        truth=truth,
    )
