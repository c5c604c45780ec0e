"""The linear encoder / linear decoder pair shared by the shallow SAEs.

Every function here also takes a stacked model's tensors (benchmark/training/stacking.py): inputs
(M, B, d), vectors such as biases (M, d) and matrices (M, d, K), one batched product for all
models. A vector is added to a batch through `over_batch`, which on an unstacked (d,) vector
is the usual broadcast.
"""
import torch
from torch import nn

from benchmark.variant import SAE

from baselines._sparse import decode_rows


def over_batch(vector: torch.Tensor) -> torch.Tensor:
    """A per-model vector (d,) or (M, d) viewed (1, d) / (M, 1, d), to broadcast over a batch
    (B, d) / (M, B, d)."""
    return vector.unsqueeze(-2)


def squared_error(x: torch.Tensor, x_hat: torch.Tensor, stacked: bool = False) -> torch.Tensor:
    """Per-sample sum of squared errors, averaged over the batch (the papers' per-image loss);
    for stacked inputs (M, B, ...) one value per model, (M,)."""
    return (x - x_hat).pow(2).flatten(2 if stacked else 1).sum(-1).mean(-1)


def _vector_times_matrix(vector, matrix):
    """(K,) @ (K, d), or per model (M, K) @ (M, K, d)."""
    return (vector.unsqueeze(-2) @ matrix).squeeze(-2)


class _CenteredLinear(torch.autograd.Function):
    """(x - center) @ weight (+ bias), with a cheaper backward for `center`.

    Autograd would get center's gradient by forming the (B, d) gradient of x - center, a full
    B·d·K matrix product, and summing it over the batch; summing the (B, K) output gradient
    first needs only a vector-matrix product. The forward pass and every other gradient are
    computed by the same operations as the plain expression.
    """

    @staticmethod
    def forward(ctx, x, center, weight, bias):
        centered = x - over_batch(center)
        ctx.save_for_backward(centered, weight)
        out = centered @ weight
        return out if bias is None else out + over_batch(bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        centered, weight = ctx.saved_tensors
        need_x, need_center, need_weight, need_bias = ctx.needs_input_grad
        summed = grad.sum(-2) if need_center or need_bias else None  # over the batch
        return (
            grad @ weight.mT if need_x else None,
            -_vector_times_matrix(summed, weight.mT) if need_center else None,
            centered.mT @ grad if need_weight else None,
            summed if need_bias else None,
        )


def centered_linear(x, center, weight, bias=None):
    """(x - center) @ weight (+ bias) for x of shape (B, d), or (M, B, d) with each model's
    center (M, d), weight (M, d, K) and bias (M, K). Without gradients, and under tracing
    (fvcore's FLOP count, which cannot see inside an autograd.Function), the plain expression
    runs; both give the same numbers."""
    if torch.is_grad_enabled() and not torch.jit.is_tracing():
        return _CenteredLinear.apply(x, center, weight, bias)
    out = (x - over_batch(center)) @ weight
    return out if bias is None else out + over_batch(bias)


class DictionarySAE(SAE):
    """A dictionary of atoms (the rows of W_dec, random unit-norm at first) and a decoder bias
    b_dec that starts at the mean training input: what every SAE decoding through a free
    dictionary shares, whatever its encoder.

    Its subclasses' encode / decode / loss / after_step also run stacked (benchmark/training/stacking.py):
    the maths is written over the last axes (features, latents, batch = -2), so a leading model
    axis simply rides along."""

    unit_norm_atoms = True  # renormalise decoder rows after every step

    def __init__(self, input_shape, n_latents):
        super().__init__(input_shape, n_latents)
        atoms = torch.randn(n_latents, self.input_dim)
        self.W_dec = nn.Parameter(atoms / atoms.norm(dim=1, keepdim=True))
        self.b_dec = nn.Parameter(torch.zeros(self.input_dim))

    @property
    def stacked(self) -> bool:
        return self.n_models is not None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Samples (..., *input_shape) flattened to (..., d)."""
        return x.flatten(x.dim() - len(self.input_shape))

    def squared_error(self, x, x_hat) -> torch.Tensor:
        return squared_error(x, x_hat, self.stacked)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        self.b_dec.copy_(x.flatten(1).mean(0))

    @torch.no_grad()
    def after_step(self) -> None:
        if self.unit_norm_atoms:
            self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def atoms(self) -> torch.Tensor:
        return self.W_dec.detach().reshape(self.n_latents, *self.input_shape).clone()

    def decode_with(self, codes: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
        """codes @ atoms + b_dec, shaped like the samples."""
        x_hat = decode_rows(codes, atoms) + over_batch(self.b_dec)
        return x_hat.view(*codes.shape[:-1], *self.input_shape)


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
        return centered_linear(self.features(x), self.b_dec, self.W_enc, self.b_enc)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decode_with(codes, self.W_dec)
