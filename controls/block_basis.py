"""`block-basis` (images only): each latent is the mean of one colour channel over one b×b
block of pixels, decoded by painting the block with it. No learning and no sparsity: its L0 is
C·(H/b)·(W/b) (fewer only where a block is exactly zero), so at matched L0 it shows what plain
downsampling achieves; settings are the block sizes that divide the image.
"""
import torch
from torch import nn
from torch.nn import functional as F

from benchmark.control import Control
from benchmark.registry import CONTROLS


@CONTROLS.register("block-basis")
class BlockBasisControl(Control):
    requires = frozenset({"image"})

    @classmethod
    def settings(cls, targets, dataset):
        _, height, width = dataset.input_shape
        return [{"block": b} for b in range(1, min(height, width) + 1) if height % b == 0 and width % b == 0]

    @classmethod
    def configure(cls, dataset, n_latents, hparams):
        channels, height, width = dataset.input_shape
        block = int(hparams["block"])
        return channels * (height // block) * (width // block), dict(hparams)

    def __init__(self, input_shape, n_latents, block: int = 4):
        super().__init__(input_shape, n_latents)
        channels, height, width = self.input_shape
        if height % block or width % block:
            raise ValueError(f"block {block} does not divide {height}×{width}")
        self.block = int(block)
        self.grid = (channels, height // block, width // block)
        self._anchor = nn.Parameter(torch.zeros(()), requires_grad=False)  # gives the model a device

    def fit(self, x):
        pass  # nothing to fit: the basis is fixed

    def encode(self, x):
        return F.avg_pool2d(x, self.block).flatten(1)

    def decode(self, codes):
        return F.interpolate(codes.view(-1, *self.grid), scale_factor=self.block, mode="nearest")
