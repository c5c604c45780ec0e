"""Task 2: how sparse the codes are on the test split, and how many latents are dead or dense."""
import torch

from benchmark.registry import TASKS
from benchmark.task import Task

from tasks._common import active_per_sample, encode_test

DENSE_THRESHOLD = 0.10  # a latent firing on more than 10% of samples is "dense"


def hoyer(codes: torch.Tensor) -> torch.Tensor:
    """Per-sample Hoyer sparsity (√n − ‖z‖₁/‖z‖₂)/(√n − 1): 1 for one non-zero, 0 for all equal.
    An all-zero code counts as 1 (nothing is active), and so does a code of one latent."""
    n = codes.shape[1]
    if n == 1:
        return torch.ones(codes.shape[0], dtype=codes.dtype, device=codes.device)
    l1, l2 = codes.abs().sum(1), codes.norm(dim=1)
    ratio = torch.where(l2 > 0, l1 / l2.clamp_min(1e-30), torch.ones_like(l1))
    return (n**0.5 - ratio) / (n**0.5 - 1)


def sparsity_metrics(codes: torch.Tensor) -> dict[str, float]:
    active = codes != 0
    per_sample = active_per_sample(codes)
    firing_rate = active.double().mean(0)
    return {
        "l0": float(per_sample.mean()),
        "l0_std": float(per_sample.std(unbiased=False)),
        "dead_frac": float((firing_rate == 0).double().mean()),
        "dense_frac": float((firing_rate > DENSE_THRESHOLD).double().mean()),
        "hoyer": float(hoyer(codes.double()).mean()),
    }


@TASKS.register("sparsity")
class Sparsity(Task):
    description = "Active latents per sample (L0), dead and dense latents, Hoyer sparsity."
    # L0 itself is matched by construction in every comparison, so the headline asks how peaked
    # the codes are at that L0. dead_frac, the headline before, was degenerate: on minilm every
    # trained model, twin and control sits at 0-0.02 dead, so it ranked nothing (twins tied first).
    headline = "hoyer"
    metrics = {"l0": False, "l0_std": False, "dead_frac": False, "dense_frac": False, "hoyer": True}

    def evaluate(self, trained, dataset, config):
        codes, _ = encode_test(trained.model, dataset)
        return sparsity_metrics(codes)
