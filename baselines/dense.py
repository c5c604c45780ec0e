"""Dense-SAE, Tensor-SAE's baseline: the same encoder and loss, free unit-norm atoms.

Its width is matched to `tensor`'s parameter count by the harness (`match_params_of: tensor`
in the preset), never hard-coded.
"""
from benchmark.registry import VARIANTS

from baselines.relu import ReluSAE


@VARIANTS.register("dense")
class DenseSAE(ReluSAE):
    unit_norm_atoms = True  # renormalised after every step, as in Tensor-SAE's reference code

    def l1_penalty(self, codes):
        # Plain L1, as Tensor-SAE's loss: with unit-norm atoms no norm weighting is needed, and
        # weighting would send a gradient through the norms that renormalisation then undoes.
        return codes.abs().sum(-1).mean(-1)
