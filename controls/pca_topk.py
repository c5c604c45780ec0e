"""`pca-topk`: the full PCA basis of the training split, keeping each sample's k largest
(in absolute value) coefficients. L0 = k; at k = the input dimension it reconstructs exactly.

An orthonormal basis makes the best k-term approximation in it exactly "keep the k largest
coefficients", so this is the best k-sparse code over a fixed, data-fitted but unlearned
dictionary: the bar a learned sparse dictionary has to clear.
"""
import torch

from benchmark.registry import CONTROLS

from baselines._sparse import decode_rows, row_sparse_codes
from controls._pca_basis import fit_pca
from controls.pca import PCAControl


@CONTROLS.register("pca-topk")
class PCATopKControl(PCAControl):
    @classmethod
    def configure(cls, dataset, n_latents, hparams):
        n, d = dataset.train.flatten(1).shape
        return min(n, d), dict(hparams, k=min(int(hparams["k"]), n, d))

    def __init__(self, input_shape, n_latents, k: int = 16):
        super().__init__(input_shape, n_latents, k=k)
        self.register_buffer("components", torch.zeros(n_latents, self.input_dim))

    def fit(self, x):
        self.mean, self.components = fit_pca(x, self.n_latents)

    def encode(self, x):
        coefficients = (x.flatten(1) - self.mean) @ self.components.t()
        indices = coefficients.abs().topk(self.k, dim=1).indices
        return row_sparse_codes(indices, coefficients.gather(1, indices), self.n_latents)

    def decode(self, codes):
        return (decode_rows(codes, self.components) + self.mean).view(-1, *self.input_shape)

    @torch.no_grad()
    def atoms(self):
        return self.components.reshape(self.n_latents, *self.input_shape).clone()
