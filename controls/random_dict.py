"""`random-dict`: a frozen dictionary of K random unit-norm atoms (K = the variants' dictionary
size on the dataset), coded per sample by k steps of matching pursuit, with the mean training
input as decoder bias.

It is MP-SAE's encoder and decoder with the dictionary left at its random initialisation, so the
gap between `mp` and `random-dict` at the same L0 is what training the dictionary bought
(random baselines come close to trained SAEs on several popular metrics: arXiv 2602.14111).
"""
from benchmark.control import Control
from benchmark.registry import CONTROLS

from baselines.mp import MatchingPursuitSAE


@CONTROLS.register("random-dict")
class RandomDictControl(Control, MatchingPursuitSAE):
    def __init__(self, input_shape, n_latents, k: int = 16):
        MatchingPursuitSAE.__init__(self, input_shape, n_latents, k=k)
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    def fit(self, x):
        self.init_from_data(x)  # b_dec = the mean training input; the atoms stay random

