"""Evaluation helpers shared by several tasks."""
import torch

from benchmark.data import Dataset
from benchmark.variant import SAE, encode_batch


@torch.no_grad()
def encode_all(model: SAE, x: torch.Tensor, concepts: torch.Tensor | None = None,
               chunk: int = 512) -> torch.Tensor:
    """Codes of every row of `x`, in chunks so a big test split never meets a big encoder at once."""
    parts = []
    for lo in range(0, x.shape[0], chunk):
        part_concepts = None if concepts is None else concepts[lo : lo + chunk]
        parts.append(encode_batch(model, x[lo : lo + chunk], part_concepts))
    return torch.cat(parts)


@torch.no_grad()
def encode_test(model: SAE, dataset: Dataset, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, reconstructions) of the whole test split."""
    codes = encode_all(model, dataset.test, dataset.test_concepts, chunk)
    return codes, torch.cat([model.decode(part) for part in codes.split(chunk)])


def active_per_sample(codes: torch.Tensor) -> torch.Tensor:
    """Distinct active latents of each row (float64): L0, as the sparsity task and every row's
    `l0` column count it."""
    return (codes != 0).sum(1).double()


def pooled_r2(target: torch.Tensor, prediction: torch.Tensor) -> float:
    """1 − Σ‖x − x̂‖² / Σ‖x − x̄‖², x̄ the per-dimension mean of `target` (sklearn's
    r2_score with multioutput="variance_weighted")."""
    target, prediction = target.flatten(1).double(), prediction.flatten(1).double()
    residual = (target - prediction).pow(2).sum()
    total = (target - target.mean(0)).pow(2).sum()
    return float(1 - residual / total)


MIN_MSE = 1e-10  # caps PSNR at 100 dB: a perfect reconstruction is a finite, comparable score


def psnr_db(mse: float, peak: float = 1.0) -> float:
    return 10 * torch.log10(torch.tensor(peak**2 / max(mse, MIN_MSE))).item()
