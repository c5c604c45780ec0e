"""ReLU SAE with an L1 penalty weighted by decoder norms (free-norm atoms), as in
Anthropic's "Towards Monosemanticity" April-2024 update."""
from benchmark.registry import VARIANTS

from baselines._linear import LinearSAE, over_batch


@VARIANTS.register("relu")
class ReluSAE(LinearSAE):
    unit_norm_atoms = False  # the norm-weighted penalty removes the need to fix atom norms
    stackable_hparams = frozenset({"l1_coeff"})

    def __init__(self, input_shape, n_latents, l1_coeff: float = 0.3):
        super().__init__(input_shape, n_latents)
        self.l1_coeff = l1_coeff

    def encode(self, x):
        return self.pre_activation(x).relu()

    def l1_penalty(self, codes):
        return (codes * over_batch(self.W_dec.norm(dim=-1))).sum(-1).mean(-1)

    def loss(self, x, x_hat, codes):
        mse = self.squared_error(x, x_hat)
        l1 = self.l1_penalty(codes)
        # mse and l1 are scalars, or per model (M,) like a stack's l1_coeff.
        return mse + self.l1_coeff * l1, {"mse": mse.detach(), "l1": l1.detach()}
