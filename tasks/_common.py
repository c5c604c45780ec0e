"""Evaluation helpers shared by several tasks."""
import torch

from benchmark.data import Dataset
from benchmark.variant import SAE, encode_batch


@torch.no_grad()
def encode_test(model: SAE, dataset: Dataset, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, reconstructions) of the whole test split, in batches."""
    codes, recons = [], []
    for lo in range(0, dataset.test.shape[0], batch_size):
        x = dataset.test[lo : lo + batch_size]
        concepts = None if dataset.test_concepts is None else dataset.test_concepts[lo : lo + batch_size]
        z = encode_batch(model, x, concepts)
        codes.append(z)
        recons.append(model.decode(z))
    return torch.cat(codes), torch.cat(recons)


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
