"""The linear encoder / linear decoder pair shared by the shallow SAEs."""
import torch
from torch import nn

from benchmark.variant import SAE


def squared_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-sample sum of squared errors, averaged over the batch (the papers' per-image loss)."""
    return (x - x_hat).pow(2).flatten(1).sum(1).mean()


class LinearSAE(SAE):
    """pre = (x - b_dec) W_enc + b_enc; x_hat = codes W_dec + b_dec.

    Decoder rows are the atoms. The encoder starts as the decoder's transpose (tied init), and
    b_dec starts at the mean training input.
    """

    unit_norm_atoms = True  # renormalise decoder rows after every step

    def __init__(self, input_shape, n_latents):
        super().__init__(input_shape, n_latents)
        atoms = torch.randn(n_latents, self.input_dim)
        atoms = atoms / atoms.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(atoms)
        self.W_enc = nn.Parameter(atoms.t().clone())
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.b_dec = nn.Parameter(torch.zeros(self.input_dim))

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - self.b_dec) @ self.W_enc + self.b_enc

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes @ self.W_dec + self.b_dec).view(-1, *self.input_shape)

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
