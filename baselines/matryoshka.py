"""Matryoshka SAE (Bussmann et al. 2025): nested dictionaries.

The latents are ordered; every prefix of sizes `prefix_fractions`·n_latents must reconstruct the
input on its own, and the loss is the sum of the prefixes' squared errors. Early latents are
thus pushed towards general features that later ones refine. Codes come from BatchTopK (the
paper's choice, with its inference threshold) or per-sample TopK (`activation: topk`); both are
reused from `batchtopk.py` / `topk.py`, as is the AuxK dead-latent loss.
"""
import torch

from benchmark.registry import VARIANTS

from baselines._linear import over_batch
from baselines.batchtopk import BatchTopKSAE
from baselines.topk import keep_topk

ACTIVATIONS = ("batchtopk", "topk")


def prefix_ends(n_latents: int, fractions) -> list[int]:
    """Sorted distinct prefix sizes; the full dictionary is always the last prefix."""
    ends = {min(n_latents, max(1, round(f * n_latents))) for f in fractions}
    return sorted(ends | {n_latents})


@VARIANTS.register("matryoshka")
class MatryoshkaSAE(BatchTopKSAE):
    def __init__(self, input_shape, n_latents, prefix_fractions=(0.0625, 0.125, 0.25, 0.5, 1.0),
                 activation: str = "batchtopk", k: int = 32, aux_k: int = 256,
                 aux_coeff: float = 1 / 32, dead_steps: int = 200, threshold_decay: float = 0.95,
                 max_k_factor: int = 4):
        if activation not in ACTIVATIONS:
            raise ValueError(f"matryoshka activation must be one of {ACTIVATIONS}, got {activation!r}")
        super().__init__(input_shape, n_latents, k=k, aux_k=aux_k, aux_coeff=aux_coeff,
                         dead_steps=dead_steps, threshold_decay=threshold_decay,
                         max_k_factor=max_k_factor)
        self.activation = activation
        self.prefix_ends = prefix_ends(n_latents, prefix_fractions)

    def select(self, pre):
        if self.activation == "topk":
            return keep_topk(pre, self.k)
        return super().select(pre)

    def prefix_losses(self, x, x_hat, codes) -> list[torch.Tensor]:
        """Squared error of each prefix's reconstruction; the last one is the full x_hat's
        (each per model on a stack)."""
        target = self.features(x) - over_batch(self.b_dec)
        partial = torch.zeros_like(target)
        losses, start = [], 0
        for end in self.prefix_ends[:-1]:
            partial = partial + codes[..., start:end] @ self.W_dec[..., start:end, :]
            losses.append((target - partial).pow(2).sum(-1).mean(-1))
            start = end
        return losses + [self.squared_error(x, x_hat)]

    def loss(self, x, x_hat, codes):
        losses = self.prefix_losses(x, x_hat, codes)
        aux = self.aux_loss(x, x_hat) if self.training else torch.zeros_like(losses[-1])
        logs = {f"mse_prefix{end}": value.detach() for end, value in zip(self.prefix_ends, losses)}
        logs.update(mse=losses[-1].detach(), aux=aux.detach())
        return torch.stack(losses).sum(0) + self.aux_coeff * aux, logs
