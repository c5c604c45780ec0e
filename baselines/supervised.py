"""Supervised decoder-only SAE (El Harzli et al. 2026): no encoder, concept labels in.

Each concept value (e.g. shape=circle, colour=red) owns a block of `block_dim` latent
dimensions holding a learned embedding. A sample's code is the concatenation of the blocks of
its concept values, every other block zero, passed through a ReLU; one linear decoder maps it
back: x_hat = W σ(code) + b. Embeddings and decoder are learned jointly with MSE only.

An unseen combination of concepts is decoded from its concepts' blocks: that is the
compositional generalisation the `composition` task measures.
"""
import torch
from torch import nn

from benchmark.registry import VARIANTS
from benchmark.variant import SAE

from baselines._linear import squared_error

DEFAULT_BLOCK_DIM = 10  # the paper's d


@VARIANTS.register("supervised")
class SupervisedSAE(SAE):
    requires = frozenset({"concepts"})

    def __init__(self, input_shape, n_latents, factor_sizes=None, block_dim: int = DEFAULT_BLOCK_DIM):
        super().__init__(input_shape, n_latents)
        # Without a vocabulary (e.g. a bare contract check): one factor filling n_latents.
        factor_sizes = tuple(factor_sizes or (n_latents // block_dim,))
        n_values = sum(factor_sizes)
        if n_values * block_dim != n_latents:
            raise ValueError(
                f"n_latents={n_latents} must equal block_dim × values = {block_dim} × {n_values}; "
                "let configure() derive it from the dataset"
            )
        self.factor_sizes = factor_sizes
        self.block_dim = block_dim
        self.n_values = n_values
        first_value = torch.tensor((0, *factor_sizes[:-1])).cumsum(0)
        self.register_buffer("first_value", first_value)  # global index of each factor's value 0
        # Positive init: a negative entry would start behind the ReLU, with no gradient.
        self.embeddings = nn.Parameter(torch.rand(n_values, block_dim))
        # Small decoder: the model starts near the mean image (b_dec), not at noise.
        self.W_dec = nn.Parameter(torch.randn(n_latents, self.input_dim) * 0.01)
        self.b_dec = nn.Parameter(torch.zeros(self.input_dim))

    @classmethod
    def configure(cls, dataset, n_latents, hparams):
        """The latent size is set by the concept vocabulary, not by the preset's n_latents."""
        hparams = dict(hparams)
        sizes = dataset.concept_sizes()
        hparams["factor_sizes"] = list(sizes)
        return hparams.get("block_dim", DEFAULT_BLOCK_DIM) * sum(sizes), hparams

    def encode(self, x, concepts=None):
        """σ(code): block v holds relu(embedding v) when v is one of the sample's concept values."""
        if concepts is None:
            raise ValueError("the supervised SAE encodes concept labels: encode(x, concepts=...)")
        values = concepts.long() + self.first_value  # (B, n_factors) global value indices
        blocks = self.embeddings[values].relu()  # (B, n_factors, block_dim)
        index = values[:, :, None].expand_as(blocks)
        codes = blocks.new_zeros(len(values), self.n_values, self.block_dim).scatter(1, index, blocks)
        return codes.flatten(1)

    def decode(self, codes):
        return (codes @ self.W_dec + self.b_dec).view(-1, *self.input_shape)

    @torch.no_grad()
    def init_from_data(self, x):
        self.b_dec.copy_(x.flatten(1).mean(0))

    def loss(self, x, x_hat, codes):
        mse = squared_error(x, x_hat)
        return mse, {"mse": mse.detach()}
