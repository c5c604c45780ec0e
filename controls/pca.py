"""`pca`: the dense projection on the top k principal components of the training split.

L0 = k (every coefficient is non-zero). Its R² on the training split is the sum of PCA's
explained variance ratios: the best any linear code of k dense numbers can do, so an SAE at
L0 = k that does not beat it has learned nothing a closed form does not give for free.
"""
import torch
from torch import nn

from benchmark.control import Control
from benchmark.registry import CONTROLS

from controls._pca_basis import fit_pca


@CONTROLS.register("pca")
class PCAControl(Control):
    @classmethod
    def configure(cls, dataset, n_latents, hparams):
        k = min(int(hparams["k"]), *dataset.train.flatten(1).shape)
        return k, dict(hparams, k=k)

    def __init__(self, input_shape, n_latents, k: int = 16):
        super().__init__(input_shape, n_latents)
        self.k = int(k)
        self.register_buffer("mean", torch.zeros(self.input_dim))
        self.register_buffer("components", torch.zeros(self.k, self.input_dim))
        self._anchor = nn.Parameter(torch.zeros(()), requires_grad=False)  # gives the model a device

    def fit(self, x):
        self.mean, self.components = fit_pca(x, self.k)

    def encode(self, x):
        return (x.flatten(1) - self.mean) @ self.components.t()

    def decode(self, codes):
        return (codes @ self.components + self.mean).view(-1, *self.input_shape)

    @torch.no_grad()
    def atoms(self):
        return self.components.reshape(self.k, *self.input_shape).clone()
