"""Dense-SAE, Tensor-SAE's baseline: the same encoder and loss, free unit-norm atoms.

Its width is matched to `tensor`'s parameter count by the harness (`match_params_of: tensor`
in the preset), never hard-coded.
"""
from benchmark.registry import VARIANTS

from baselines._linear import LinearSAE, squared_error


@VARIANTS.register("dense")
class DenseSAE(LinearSAE):
    def __init__(self, input_shape, n_latents, l1_coeff: float = 0.3):
        super().__init__(input_shape, n_latents)
        self.l1_coeff = l1_coeff

    def encode(self, x):
        return self.pre_activation(x).relu()

    def loss(self, x, x_hat, codes):
        mse = squared_error(x, x_hat)
        l1 = codes.abs().sum(1).mean()
        return mse + self.l1_coeff * l1, {"mse": mse.detach(), "l1": l1.detach()}
