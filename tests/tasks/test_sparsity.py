import pytest
import torch

from tasks.sparsity import hoyer, sparsity_metrics


def test_hoyer_known_values():
    one_hot = torch.tensor([[0.0, 3.0, 0.0, 0.0]])
    uniform = torch.tensor([[2.0, 2.0, 2.0, 2.0]])
    half = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert hoyer(one_hot).item() == pytest.approx(1.0)
    assert hoyer(uniform).item() == pytest.approx(0.0)
    assert hoyer(half).item() == pytest.approx((2 - 2**0.5) / (2 - 1))
    assert hoyer(torch.zeros(1, 4)).item() == pytest.approx(1.0)


def test_sparsity_metrics_on_a_known_code_matrix():
    codes = torch.zeros(20, 5)
    codes[:, 0] = 1.0  # latent 0 fires on every sample: dense
    codes[0, 1] = 2.0  # latent 1 fires once (5% of samples): not dense
    codes[:10, 2] = 0.5  # latent 2 fires on half: dense; latents 3 and 4: dead
    out = sparsity_metrics(codes)
    per_sample = torch.tensor([3.0] + [2.0] * 9 + [1.0] * 10)
    assert out["l0"] == pytest.approx(per_sample.mean().item())
    assert out["l0_std"] == pytest.approx(per_sample.std(unbiased=False).item())
    assert out["dead_frac"] == pytest.approx(2 / 5)
    assert out["dense_frac"] == pytest.approx(2 / 5)
