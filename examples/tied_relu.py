"""A tied ReLU SAE, written as a new user would bring one: one weight matrix is both the
dictionary and (transposed) the encoder.

    codes = ReLU((x - b_dec) Wᵀ + b_enc)
    x̂     = codes W + b_dec
    loss  = ‖x - x̂‖² + λ Σ_k codes_k ‖W_k‖

It is the case issue 22 was filed on: trained, and again with `train: {lr: 1e-12}` (its
untrained self), through `intervention` on whitened8:

    python -m benchmark run --variant examples/tied_relu.py:TiedReluSAE \
        --config examples/tied_relu.yaml --preset full --task intervention --dataset whitened8 --out /tmp/tied
    python -m benchmark run --variant examples/tied_relu.py:TiedReluSAE \
        --config examples/tied_relu_lr1e-12.yaml --preset full --task intervention --dataset whitened8 \
        --out /tmp/tied-lr0
"""
import torch
from torch import nn

from benchmark.variant import SAE


class TiedReluSAE(SAE):
    def __init__(self, input_shape, n_latents, l1_coeff: float = 1.0):
        super().__init__(input_shape, n_latents)
        self.l1_coeff = l1_coeff
        atoms = torch.randn(n_latents, self.input_dim)
        self.W = nn.Parameter(atoms / atoms.norm(dim=1, keepdim=True))
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.b_dec = nn.Parameter(torch.zeros(self.input_dim))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x.flatten(1) - self.b_dec) @ self.W.T + self.b_enc)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes @ self.W + self.b_dec).view(-1, *self.input_shape)

    def loss(self, x, x_hat, codes):
        mse = (x.flatten(1) - x_hat.flatten(1)).pow(2).sum(1).mean()
        l1 = (codes * self.W.norm(dim=1)).sum(1).mean()
        return mse + self.l1_coeff * l1, {"mse": mse.detach(), "l1": l1.detach()}

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        self.b_dec.copy_(x.flatten(1).mean(0))
