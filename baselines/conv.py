"""ConvAE, Tensor-SAE's convolutional baseline: a conv encoder to a ReLU bottleneck of d
channels at (H/4)×(W/4), a mirrored transposed-conv decoder, and the squared error only.

The bottleneck is two stride-2 convolutions below the input: 8×8×d for 32×32 images (the
paper's), 2×2×d for 8×8 digits; H and W must be multiples of 4. Codes are the flattened
bottleneck, so n_latents = (H/4)·(W/4)·d and `latent_step` is (H/4)·(W/4): the harness picks d
with `match_params_of: tensor` so the parameter count matches Tensor-SAE's (within 5%).

Layers (hidden width m·d, m = `hidden_mult`):
  encoder  conv4×4/2 C→d, conv4×4/2 d→m·d, conv3×3 m·d→d, ReLU after each (the last is the
           bottleneck's);
  decoder  conv3×3 d→m·d, convT4×4/2 m·d→d, convT4×4/2 d→C, ReLU between.
Loss: squared error, plus `l1_coeff`·‖z‖₁ on the bottleneck (0, the paper's, by default).
Nearly every parameter works at the bottleneck resolution, so the FLOPs per parameter are
about (H/4)·(W/4), far more than a linear SAE's one: the trade-off the Tensor-SAE paper measures.
"""
import torch
from torch import nn

from benchmark.variant import SAE
from benchmark.registry import VARIANTS

from baselines._linear import squared_error

DOWNSAMPLE = 4  # two stride-2 convolutions


def bottleneck_size(input_shape) -> tuple[int, int]:
    _, height, width = input_shape
    if height % DOWNSAMPLE or width % DOWNSAMPLE:
        raise ValueError(f"conv needs H and W divisible by {DOWNSAMPLE}, got {height}×{width}")
    return height // DOWNSAMPLE, width // DOWNSAMPLE


@VARIANTS.register("conv")
class ConvAE(SAE):
    requires = frozenset({"image"})

    @classmethod
    def latent_step(cls, input_shape) -> int:
        if len(input_shape) != 3:  # not an image: the variant will be skipped anyway
            return 1
        height, width = bottleneck_size(input_shape)
        return height * width

    def __init__(self, input_shape, n_latents, hidden_mult: int = 2, l1_coeff: float = 0.0):
        super().__init__(input_shape, n_latents)
        channels = self.input_shape[0]
        self.bottleneck_hw = bottleneck_size(self.input_shape)
        step = self.latent_step(self.input_shape)
        if n_latents % step:
            raise ValueError(f"conv n_latents must be a multiple of {step} (the bottleneck's h·w)")
        depth = n_latents // step
        hidden = hidden_mult * depth
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, depth, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(depth, hidden, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, depth, 3, padding=1), nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(depth, hidden, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(hidden, depth, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(depth, channels, 4, stride=2, padding=1),
        )
        self.depth = depth
        # The paper's ConvAE is MSE only (l1_coeff 0): its bottleneck is dense. An L1 penalty on
        # the bottleneck gives it the sparsity axis every variant is compared along.
        self.l1_coeff = l1_coeff

    def encode(self, x):
        return self.encoder(x).flatten(1)

    def decode(self, codes):
        return self.decoder(codes.view(-1, self.depth, *self.bottleneck_hw))

    def loss(self, x, x_hat, codes):
        mse = squared_error(x, x_hat)
        l1 = codes.abs().sum(1).mean()
        return mse + self.l1_coeff * l1, {"mse": mse.detach(), "l1": l1.detach()}

    @torch.no_grad()
    def init_from_data(self, x):
        # The output bias starts at the mean pixel of each channel, as b_dec does for the SAEs.
        self.decoder[-1].bias.copy_(x.mean(dim=(0, 2, 3)))
