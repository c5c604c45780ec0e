"""FLOP and parameter counting, and parameter matching by a computed width.

fvcore counts one multiply-add as one flop, and counts matrix products and convolutions only
(element-wise operations are not counted). We report its count as-is and say so.
"""
import logging
import warnings

import torch
from torch import nn

with warnings.catch_warnings():  # fvcore's focal loss calls the deprecated torch.jit.script at import
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis

from benchmark.variant import SAE, encode_batch


class _EncodeDecode(nn.Module):
    def __init__(self, model: SAE):
        super().__init__()
        self.model = model

    def forward(self, x, concepts=None):
        return self.model.decode(encode_batch(self.model, x, concepts))


@torch.no_grad()
def flops_per_sample(model: SAE, x: torch.Tensor, concepts: torch.Tensor | None = None) -> float:
    """fvcore's count of one encode + decode, amortised over the batch `x`."""
    logging.getLogger("fvcore").setLevel(logging.ERROR)  # it warns about every uncounted op
    inputs = (x,) if concepts is None else (x, concepts)
    analysis = FlopCountAnalysis(_EncodeDecode(model).eval(), inputs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis.total() / x.shape[0]


def count_params(model: nn.Module) -> int:
    """Trainable parameters; for a model that is never trained (a control, a loaded
    checkpoint), the floating-point numbers it stores (its fitted basis), so that R² per
    parameter compares what each model has to keep."""
    if getattr(model, "trainable", True):
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    return sum(t.numel() for t in [*model.parameters(), *model.buffers()] if t.is_floating_point() and t.dim() > 0)


def params_of(variant_cls, input_shape, n_latents: int, hparams: dict) -> int:
    """Trainable parameters of a variant, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return count_params(variant_cls(input_shape, n_latents, **hparams))


def match_n_latents(variant_cls, input_shape, hparams: dict, target_params: int, step: int = 1) -> int:
    """The multiple of `step` whose parameter count is closest to `target_params`.

    Assumes the count grows with n_latents (true of every SAE): bisection, then the nearer
    neighbour.
    """
    count = lambda k: params_of(variant_cls, input_shape, k * step, hparams)  # noqa: E731
    lo, hi = 1, 2
    while count(hi) < target_params:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target_params else (lo, mid)
    best = min((lo, hi), key=lambda k: abs(count(k) - target_params))
    return best * step
