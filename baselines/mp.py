"""MP-SAE (Costa, Fel et al. 2025): the encoder is k unrolled steps of matching pursuit over
the decoder's own unit-norm atoms; training is end to end through the unrolled steps.

One step: select the atom with the largest inner product with the residual r, add its
coefficient c = <r, d> to the code, and subtract c·d from r. With unit-norm atoms
||r - c·d||² = ||r||² - c², so reconstruction never gets worse as steps are added, and
`set_inference_k` changes the number of steps at inference.

Selection rule: the largest *signed* inner product (as the SPEC states), with the coefficient
clipped at zero. Codes are then non-negative like every other SAE's here, and an atom stands
for one direction, not ±. The clip only matters when every inner product is ≤ 0, where the step
then adds nothing (the residual is unchanged, so it still never grows).

Cost: the residual itself is never formed. The correlations c = r·Dᵀ start at (x - b)·Dᵀ and are
updated through the Gram matrix G = D·Dᵀ, c ← c - coef·G[selected] (as in batch OMP), which is
exactly the plain loop's r·Dᵀ up to float rounding, at B·K per step instead of B·K·input_dim.
"""
import torch
from torch import nn

from benchmark.registry import VARIANTS

from baselines._linear import DictionarySAE, centered_linear
from baselines._pursuit import gram_matrix, pursuit_steps
from baselines._sparse import row_sparse_codes


@VARIANTS.register("mp")
class MatchingPursuitSAE(DictionarySAE):
    """No encoder weights: the unit-norm dictionary (renormalised after every step) is pursued."""

    stackable_hparams = frozenset({"k"})

    def __init__(self, input_shape, n_latents, k: int = 32):
        super().__init__(input_shape, n_latents)
        self.k = int(k)

    def set_inference_k(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"mp needs at least one pursuit step, got k={k}")
        self.k = int(k)

    def dictionary(self) -> torch.Tensor:
        """Unit-norm atoms, normalised in the forward pass too: MP's guarantee needs them exact
        between the optimiser step and `after_step`, and gradients then see the constraint."""
        return nn.functional.normalize(self.W_dec, dim=-1)

    def encode(self, x):
        atoms = self.dictionary()
        correlations = centered_linear(self.features(x), self.b_dec, atoms.mT)  # (B, K): <r_0, d_j>
        # The k steps, c <- c - coef·G[selected], with a hand-written backward (baselines/_pursuit.py).
        chosen, coefs = pursuit_steps(correlations, gram_matrix(atoms), self.k)
        # An atom selected twice accumulates its coefficients (scatter_add); the codes carry
        # their support so that decoding gathers k atoms per row.
        return row_sparse_codes(chosen, coefs, self.n_latents)

    def decode(self, codes):
        return self.decode_with(codes, self.dictionary())

    def loss(self, x, x_hat, codes):
        mse = self.squared_error(x, x_hat)
        return mse, {"mse": mse.detach()}
