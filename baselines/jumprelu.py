"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead").

codes = pre · H(pre - θ), with a learned per-latent threshold θ = exp(log_threshold), and the
loss ||x - x̂||² + λ·L0, L0 = Σ H(pre - θ). H has zero derivative almost everywhere, so both
the jump and the L0 term reach θ through a straight-through estimator: the pseudo-derivative
of H(z - θ) with respect to θ is -(1/ε)·K((z - θ)/ε), K the rectangle kernel 1[|u| < 1/2] of
bandwidth ε. As in the paper, pre-activations get the ordinary gradient through the jump
(H treated as a constant) and none from the L0 term.
"""
import math

import torch
from torch import nn

from benchmark.registry import VARIANTS

from baselines._linear import LinearSAE, over_batch
from baselines._cpu import float_mask


def rectangle(u: torch.Tensor) -> torch.Tensor:
    """K(u) = 1[|u| < 1/2] as 0/1 values; overwrites u (a temporary of the caller's)."""
    return float_mask(u.abs_() < 0.5, u)


def window(pre, threshold, bandwidth) -> torch.Tensor:
    """K((pre - θ)/ε), the straight-through window."""
    return rectangle((pre - threshold).div_(bandwidth))


class JumpReLU(torch.autograd.Function):
    """pre · H(pre - θ); d/dθ = -(θ/ε)·K((pre - θ)/ε) per element, summed over the batch.
    pre (B, K) with θ (K,), or per model (M, B, K) with θ (M, K)."""

    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        threshold = over_batch(threshold)
        above = float_mask(pre > threshold, pre)  # H(pre - θ), kept for the backward pass
        ctx.save_for_backward(pre, threshold, above)
        ctx.bandwidth = bandwidth
        return pre * above

    @staticmethod
    def backward(ctx, grad):
        pre, threshold, above = ctx.saved_tensors
        slope = -(threshold / ctx.bandwidth) * window(pre, threshold, ctx.bandwidth)
        return grad * above, (slope * grad).sum(-2), None  # θ's: over the batch


class Step(torch.autograd.Function):
    """H(pre - θ); d/dθ = -(1/ε)·K((pre - θ)/ε), and no gradient to pre. Shapes as JumpReLU's."""

    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        threshold = over_batch(threshold)
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return float_mask(pre > threshold, pre)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        slope = -(1 / ctx.bandwidth) * window(pre, threshold, ctx.bandwidth)
        return None, (slope * grad).sum(-2), None


@VARIANTS.register("jumprelu")
class JumpReLUSAE(LinearSAE):
    stackable_hparams = frozenset({"l0_coeff"})

    def __init__(self, input_shape, n_latents, l0_coeff: float = 0.2, bandwidth: float = 0.05,
                 threshold_init: float = 0.1, threshold_lr_mult: float = 1.0):
        super().__init__(input_shape, n_latents)
        self.l0_coeff = l0_coeff
        self.bandwidth = bandwidth
        # Adam moves each parameter by about lr per step whatever the size of its gradient, so in
        # a run of a few hundred steps log θ could only move by a few tenths and λ would barely
        # act. Storing log θ / m as the parameter gives θ an m-times larger effective learning
        # rate (m = threshold_lr_mult; 1 is the paper's plain parametrisation).
        self.threshold_lr_mult = float(threshold_lr_mult)
        log_init = math.log(threshold_init) / self.threshold_lr_mult
        self.scaled_log_threshold = nn.Parameter(torch.full((n_latents,), log_init))
        self._last_pre = None  # (x, pre) of the last training encode, reused by the L0 term

    @property
    def threshold(self) -> torch.Tensor:
        return (self.threshold_lr_mult * self.scaled_log_threshold).exp()

    def activations(self, x):
        # A ReLU before the jump, as in the paper's pseudo-code: with θ > 0 it changes no code.
        return self.pre_activation(x).relu()

    def encode(self, x):
        pre = self.activations(x)
        if self.training:
            self._last_pre = (x, pre)
        return JumpReLU.apply(pre, self.threshold, self.bandwidth)

    def l0(self, x) -> torch.Tensor:
        """Mean count of active latents per sample, with the STE gradient to θ."""
        cached_x, pre = self._last_pre if self._last_pre is not None else (None, None)
        self._last_pre = None  # hold no autograd graph beyond the step (and keep the model copyable)
        if cached_x is not x:  # loss called on a batch encode did not just see
            pre = self.activations(x)
        return Step.apply(pre, self.threshold, self.bandwidth).sum(-1).mean(-1)

    def loss(self, x, x_hat, codes):
        mse = self.squared_error(x, x_hat)
        l0 = self.l0(x)
        return mse + self.l0_coeff * l0, {"mse": mse.detach(), "l0": l0.detach()}
