"""The linear encoder / linear decoder pair shared by the shallow SAEs."""
import torch
from torch import nn

from benchmark.variant import SAE

from baselines._sparse import decode_rows


def squared_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-sample sum of squared errors, averaged over the batch (the papers' per-image loss)."""
    return (x - x_hat).pow(2).flatten(1).sum(1).mean()


class _CenteredLinear(torch.autograd.Function):
    """(x - center) @ weight (+ bias), with a cheaper backward for `center`.

    Autograd would get center's gradient by forming the (B, d) gradient of x - center, a full
    B·d·K matrix product, and summing it over the batch; summing the (B, K) output gradient
    first needs only a vector-matrix product. The forward pass and every other gradient are
    computed by the same operations as the plain expression.
    """

    @staticmethod
    def forward(ctx, x, center, weight, bias):
        centered = x - center
        ctx.save_for_backward(centered, weight)
        out = centered @ weight
        return out if bias is None else out + bias

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        centered, weight = ctx.saved_tensors
        need_x, need_center, need_weight, need_bias = ctx.needs_input_grad
        summed = grad.sum(0) if need_center or need_bias else None
        return (
            grad @ weight.t() if need_x else None,
            -(summed @ weight.t()) if need_center else None,
            centered.t() @ grad if need_weight else None,
            summed if need_bias else None,
        )


def centered_linear(x, center, weight, bias=None):
    """(x - center) @ weight (+ bias) for x of shape (B, d). Without gradients, and under
    tracing (fvcore's FLOP count, which cannot see inside an autograd.Function), the plain
    expression runs; both give the same numbers."""
    if torch.is_grad_enabled() and not torch.jit.is_tracing():
        return _CenteredLinear.apply(x, center, weight, bias)
    out = (x - center) @ weight
    return out if bias is None else out + bias


class DictionarySAE(SAE):
    """A dictionary of atoms (the rows of W_dec, random unit-norm at first) and a decoder bias
    b_dec that starts at the mean training input: what every SAE decoding through a free
    dictionary shares, whatever its encoder."""

    unit_norm_atoms = True  # renormalise decoder rows after every step

    def __init__(self, input_shape, n_latents):
        super().__init__(input_shape, n_latents)
        atoms = torch.randn(n_latents, self.input_dim)
        self.W_dec = nn.Parameter(atoms / atoms.norm(dim=1, keepdim=True))
        self.b_dec = nn.Parameter(torch.zeros(self.input_dim))

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        self.b_dec.copy_(x.flatten(1).mean(0))

    @torch.no_grad()
    def after_step(self) -> None:
        if self.unit_norm_atoms:
            self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def atoms(self) -> torch.Tensor:
        return self.W_dec.detach().reshape(self.n_latents, *self.input_shape).clone()


class LinearSAE(DictionarySAE):
    """pre = (x - b_dec) W_enc + b_enc; x_hat = codes W_dec + b_dec.

    The encoder starts as the decoder's transpose (tied init).
    """

    def __init__(self, input_shape, n_latents):
        super().__init__(input_shape, n_latents)
        # Row-major, the layout of its gradient (no copy per step); a copy, never a view of W_dec.
        self.W_enc = nn.Parameter(self.W_dec.detach().t().clone(memory_format=torch.contiguous_format))
        self.b_enc = nn.Parameter(torch.zeros(n_latents))

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        return centered_linear(x.flatten(1), self.b_dec, self.W_enc, self.b_enc)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return (decode_rows(codes, self.W_dec) + self.b_dec).view(-1, *self.input_shape)
