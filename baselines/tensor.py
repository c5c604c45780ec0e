"""Tensor-SAE: a linear ReLU encoder and a decoder of rank-1 atoms c_k ⊗ h_k ⊗ w_k
(colour × height × width), each factor L2-normalised on every forward."""
import torch
from torch import nn

from benchmark.registry import VARIANTS
from benchmark.variant import SAE

from baselines._linear import squared_error


@VARIANTS.register("tensor")
class TensorSAE(SAE):
    requires = frozenset({"image"})

    def __init__(self, input_shape, n_latents, l1_coeff: float = 0.3):
        super().__init__(input_shape, n_latents)
        channels, height, width = self.input_shape
        self.l1_coeff = l1_coeff
        # Unit-norm factors from the start, as the dense baselines' unit-norm atoms: the forward
        # normalises anyway, but with randn factors (norm ≈ √H) Adam's fixed-size steps turn the
        # directions ~√H times slower (patches32, 6 epochs: R² 0.29 instead of 0.73).
        unit = lambda n: nn.functional.normalize(torch.randn(n_latents, n), dim=1)  # noqa: E731
        self.colour = nn.Parameter(unit(channels))
        self.rows = nn.Parameter(unit(height))
        self.cols = nn.Parameter(unit(width))
        self.b_dec = nn.Parameter(torch.zeros(self.input_shape))
        # Tied init, as for the dense baselines: the encoder starts as the atoms' transpose.
        with torch.no_grad():
            self.W_enc = nn.Parameter(self.atom_matrix().t().clone())
        self.b_enc = nn.Parameter(torch.zeros(n_latents))

    def atom_matrix(self) -> torch.Tensor:
        """(K, C·H·W): unit-norm rank-1 atoms (a product of unit vectors has unit norm)."""
        c, h, w = (nn.functional.normalize(f, dim=1) for f in (self.colour, self.rows, self.cols))
        return (c[:, :, None, None] * h[:, None, :, None] * w[:, None, None, :]).flatten(1)

    def encode(self, x):
        return ((x - self.b_dec).flatten(1) @ self.W_enc + self.b_enc).relu()

    def decode(self, codes):
        return (codes @ self.atom_matrix()).view(-1, *self.input_shape) + self.b_dec

    @torch.no_grad()
    def init_from_data(self, x):
        self.b_dec.copy_(x.mean(0))

    @torch.no_grad()
    def atoms(self):
        return self.atom_matrix().reshape(self.n_latents, *self.input_shape)

    def loss(self, x, x_hat, codes):
        mse = squared_error(x, x_hat)
        l1 = codes.abs().sum(1).mean()
        return mse + self.l1_coeff * l1, {"mse": mse.detach(), "l1": l1.detach()}
