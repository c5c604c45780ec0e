"""`whitened_patches`: small RGB crops (8×8 by default: 192 dimensions) of the photographs that
`patches32` uses, ZCA-whitened with the training split's statistics: the classic sparse-coding
regime (Olshausen & Field; Coates & Ng) in which localised, oriented atoms emerge.

- Crops: the photographs are downscaled so their short side is `short_side` pixels (averaging
  away sensor noise and the 8×8 JPEG blocks of the two .jpg photographs, which would otherwise
  line up with 8×8 crops). Test crops come from `patches32.photo_split(seed)`'s held-out
  photographs, never used for training, at uniform random positions drawn from `seed` (fixed
  per seed).
- Training crops are a stream (`patches32.CropStream`): every distinct crop position of the
  training photographs, in a seeded random order without replacement (a new permutation for
  each pass), whitened with the statistics below; `population` is the number of positions.
  The training split `train` is the stream's first `n_train` crops.
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
from functools import partial

import torch

from benchmark.data import Dataset
from benchmark.datasets._synthetic import take
from benchmark.datasets.patches32 import CropStream, downscaled_photos, photo_split, random_crops
from benchmark.registry import DATASETS

PIXEL_SPACE = "pixels = whitened.flatten(1) @ unwhitening + mean, reshaped to (N, C, H, W)"


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
    train_names, test_names = photo_split(seed)  # the seed also picks the held-out photographs
    pixels, _ = take(CropStream(train_names, short_side, size, seed).chunks(), n_train)
    stats = zca(pixels.flatten(1), epsilon)
    # The stream whitens each chunk with the training statistics: its first n_train samples are
    # `train`, whitened by the very same code path.
    stream = CropStream(train_names, short_side, size, seed,
                        transform=partial(whiten, stats={"mean": stats["mean"], "whitening": stats["whitening"]}))
    train, _ = take(stream.chunks(), n_train)
    test = random_crops(downscaled_photos(test_names, short_side), n_test, size, torch.Generator().manual_seed(seed))
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
        train=train,
        test=whiten(test, stats),
        config=dict(kind="whitened_patches", size=size, n_train=n_train, n_test=n_test,
                    short_side=short_side, epsilon=epsilon, seed=seed),
        truth=truth,
        stream=stream,
    )
