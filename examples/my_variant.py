"""A gated SAE (Rajamanoharan et al. 2024, "Improving Dictionary Learning with Gated Sparse
Autoencoders"), written as a submission from outside the package. Run it with

    python -m benchmark run --variant examples/my_variant.py:GatedSAE \
        --config examples/my_variant.yaml --preset smoke --out /tmp/gated

Its rows are named `my_variant.py:GatedSAE` in results.csv; run it into the same --out as the
built-in variants to see it ranked beside them.
"""
import torch
from torch import nn

from benchmark.variant import SAE


class GatedSAE(SAE):
    """Whether a latent fires (the gate) and how strongly (the magnitude) come from two encoders
    that share one weight matrix, W_mag = W_gate · exp(r_mag) (a per-latent rescale):

        π_gate = (x - b_dec) W_gate + b_gate
        codes  = 1[π_gate > 0] · ReLU((x - b_dec) W_mag + b_mag)
        x̂      = codes W_dec + b_dec
        loss   = ‖x - x̂‖² + λ ‖ReLU(π_gate)‖₁ + ‖x - x̂_frozen(ReLU(π_gate))‖²

    where x̂_frozen decodes with a frozen (detached) copy of the decoder. The gate's step function
    has no gradient, so the L1 term and that auxiliary reconstruction are what train W_gate and
    b_gate. Decoder rows (the atoms) are kept at unit norm, so the L1 term needs no weighting by
    atom norms.
    """

    def __init__(self, input_shape, n_latents, l1_coeff: float = 0.1):
        super().__init__(input_shape, n_latents)
        self.l1_coeff = l1_coeff
        atoms = torch.randn(n_latents, self.input_dim)
        atoms = atoms / atoms.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(atoms)
        self.W_gate = nn.Parameter(atoms.t().clone())  # tied initialisation
        self.r_mag = nn.Parameter(torch.zeros(n_latents))
        self.b_gate = nn.Parameter(torch.zeros(n_latents))
        self.b_mag = nn.Parameter(torch.zeros(n_latents))
        self.b_dec = nn.Parameter(torch.zeros(self.input_dim))

    def gate_pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - self.b_dec) @ self.W_gate + self.b_gate

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        centred = x.flatten(1) - self.b_dec
        gate = (centred @ self.W_gate + self.b_gate > 0).to(x.dtype)
        magnitude = torch.relu(centred @ (self.W_gate * self.r_mag.exp()) + self.b_mag)
        return gate * magnitude

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes @ self.W_dec + self.b_dec).view(-1, *self.input_shape)

    def loss(self, x, x_hat, codes):
        flat = x.flatten(1)
        reconstruction = (flat - x_hat.flatten(1)).pow(2).sum(1).mean()
        gate_activity = torch.relu(self.gate_pre_activation(x))
        sparsity = gate_activity.sum(1).mean()
        frozen_hat = gate_activity @ self.W_dec.detach() + self.b_dec.detach()
        auxiliary = (flat - frozen_hat).pow(2).sum(1).mean()
        total = reconstruction + self.l1_coeff * sparsity + auxiliary
        return total, {"mse": reconstruction.detach(), "l1": sparsity.detach(), "aux": auxiliary.detach()}

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        self.b_dec.copy_(x.flatten(1).mean(0))  # start at the mean input

    @torch.no_grad()
    def after_step(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))
