"""`dense` and `conv` are parameter-matched to `tensor` by a computed width (SPEC section 2)."""
import pytest

from benchmark.flops import match_n_latents, params_of
from benchmark.registry import VARIANTS

SHAPE = (3, 32, 32)


def relative_gap(name: str, n_latents: int, tensor_k: int) -> float:
    target = params_of(VARIANTS.get("tensor"), SHAPE, tensor_k, {})
    return abs(params_of(VARIANTS.get(name), SHAPE, n_latents, {}) - target) / target


@pytest.mark.parametrize("name", ["dense", "conv"])
@pytest.mark.parametrize("tensor_k", [256, 1024, 4096])
def test_matched_within_5_percent(name, tensor_k):
    cls = VARIANTS.get(name)
    target = params_of(VARIANTS.get("tensor"), SHAPE, tensor_k, {})
    matched = match_n_latents(cls, SHAPE, {}, target, step=cls.latent_step(SHAPE))
    assert matched % cls.latent_step(SHAPE) == 0
    assert relative_gap(name, matched, tensor_k) < 0.05
    # The check can fail: the same width as tensor's (no matching) is far outside 5%.
    assert relative_gap(name, tensor_k, tensor_k) > 0.05
