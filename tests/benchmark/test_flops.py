import pytest
import torch
from torch import nn

from benchmark.flops import count_params, flops_per_sample, match_n_latents, params_of
from benchmark.registry import VARIANTS
from benchmark.variant import SAE


class BareLinear(SAE):
    """encode = one linear map without bias; decode does no arithmetic (returns zeros)."""

    def __init__(self, input_shape, n_latents):
        super().__init__(input_shape, n_latents)
        self.enc = nn.Linear(self.input_dim, n_latents, bias=False)

    def encode(self, x):
        return self.enc(x.flatten(1))

    def decode(self, codes):
        return codes.new_zeros(codes.shape[0], *self.input_shape)


@pytest.mark.parametrize("d_in, d_out, batch", [(64, 16, 8), (300, 7, 32)])
def test_fvcore_counts_a_linear_layer_as_in_times_out_multiply_adds(d_in, d_out, batch):
    model = BareLinear((d_in,), d_out)
    assert flops_per_sample(model, torch.randn(batch, d_in)) == d_in * d_out


def test_flops_of_a_linear_sae_are_encoder_plus_decoder():
    relu = VARIANTS.get("relu")((3, 8, 8), 32)
    assert flops_per_sample(relu, torch.rand(16, 3, 8, 8)) == 2 * 192 * 32


def test_count_params_counts_trainable_only():
    model = nn.Linear(10, 3)
    model.bias.requires_grad_(False)
    assert count_params(model) == 30


def test_params_of_builds_on_meta_and_matches_a_real_build():
    cls = VARIANTS.get("tensor")
    assert params_of(cls, (3, 32, 32), 64, {}) == count_params(cls((3, 32, 32), 64))


@pytest.mark.parametrize("target, step, expected", [(1000, 1, 100), (1049, 1, 105), (1000, 8, 96), (1000, 16, 96)])
def test_match_n_latents_picks_the_nearest_width(target, step, expected):
    # BareLinear on 10 inputs has 10·K parameters: the nearest multiple of `step` is known.
    assert match_n_latents(BareLinear, (10,), {}, target, step) == expected


@pytest.mark.parametrize("k", [256, 1024, 4096])
def test_dense_is_parameter_matched_to_tensor_within_5_percent(k):
    shape = (3, 32, 32)
    target = params_of(VARIANTS.get("tensor"), shape, k, {})
    width = match_n_latents(VARIANTS.get("dense"), shape, {}, target)
    assert abs(params_of(VARIANTS.get("dense"), shape, width, {}) - target) / target < 0.05
    # Unmatched (same K), the counts are far apart: the test above is not vacuous.
    assert params_of(VARIANTS.get("dense"), shape, k, {}) / target > 1.5
