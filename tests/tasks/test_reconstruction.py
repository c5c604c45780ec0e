import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score

from benchmark.data import Dataset
from benchmark.registry import VARIANTS
from benchmark.training.loop import TrainedModel
from tasks._common import pooled_r2, psnr_db
from tasks.reconstruction import Reconstruction


def test_r2_equals_sklearn_variance_weighted_on_random_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 12, generator=g) * torch.linspace(0.1, 5, 12)
    x_hat = x + 0.7 * torch.randn(100, 12, generator=g)
    x, x_hat = x.double(), x_hat.double()
    expected = r2_score(x.numpy(), x_hat.numpy(), multioutput="variance_weighted")
    assert pooled_r2(x, x_hat) == pytest.approx(expected, abs=1e-10)
    # ...and not the unweighted average, which differs on this data.
    assert abs(pooled_r2(x, x_hat) - r2_score(x.numpy(), x_hat.numpy(), multioutput="uniform_average")) > 1e-3


def test_r2_of_a_perfect_and_of_the_mean_reconstruction():
    x = torch.randn(30, 5)
    assert pooled_r2(x, x) == 1.0
    assert pooled_r2(x, x.mean(0).expand_as(x)) == pytest.approx(0.0, abs=1e-12)


def test_psnr_known_values():
    assert psnr_db(0.01) == pytest.approx(20.0)
    assert psnr_db(1e-4) == pytest.approx(40.0)


def test_task_on_an_identity_autoencoder():
    """A TopK SAE whose dictionary is the identity reconstructs exactly at k = D."""
    torch.manual_seed(0)
    d = 16
    model = VARIANTS.get("topk")((1, 4, 4), d, k=d, aux_k=4)
    with torch.no_grad():
        model.W_dec.copy_(torch.eye(d)); model.W_enc.copy_(torch.eye(d))
        model.b_dec.zero_(); model.b_enc.zero_()
    model.eval()
    x = torch.rand(64, 1, 4, 4) + 0.1
    data = Dataset("toy", x, x, {})
    out = Reconstruction().evaluate(TrainedModel(model), data, {})
    assert out["r2"] == pytest.approx(1.0) and out["mse"] == pytest.approx(0.0, abs=1e-12)
    assert out["params"] == 2 * d * d + 2 * d
    assert out["flops_per_sample"] == 2 * d * d  # encoder and decoder matmuls, 1 multiply-add = 1
    assert out["r2_per_kparam"] == pytest.approx(out["r2"] / (out["params"] / 1e3))
    assert out["r2_at_double_k"] == pytest.approx(1.0)
    assert out["r2_at_half_k"] < 0.9  # half the pixels dropped
    assert model.k == d  # restored after the adaptive-k probes
    assert out["psnr_db"] == pytest.approx(100.0)  # the cap for a perfect reconstruction


# ----- downstream_recovered on minilm (the real MiniLM, a tiny corpus) -----
class LinearToy(torch.nn.Module):
    """x̂ = (x·E)·D + b: identity with E = D = I, b = 0; the training mean with D = 0, b = mean."""

    def __init__(self, d, decoder_scale=1.0, bias=None):
        super().__init__()
        self.n_latents, self.input_shape, self.requires = d, (d,), frozenset()
        self.E = torch.nn.Parameter(torch.eye(d))
        self.D = torch.nn.Parameter(decoder_scale * torch.eye(d))
        self.b = torch.nn.Parameter(torch.zeros(d) if bias is None else bias.clone())

    def encode(self, x):
        return x @ self.E

    def decode(self, codes):
        return codes @ self.D + self.b

    def supports_inference_k(self):
        return False


@pytest.fixture(scope="module")
def minilm_tiny(tmp_path_factory):
    from benchmark.datasets import build_dataset

    params = {"n_docs": 6, "n_docstrings": 4, "n_templated": 10, "n_downstream": 8, "n_probe_docs": 4,
              "n_probe_docstrings": 4, "n_probe_templated": 8, "cache_dir": str(tmp_path_factory.mktemp("activations"))}
    return build_dataset("minilm", params)


def test_downstream_of_an_identity_is_1_and_of_mean_ablation_is_0(minilm_tiny):
    from benchmark.minilm import downstream_recovered

    mean = minilm_tiny.train.mean(0)
    assert downstream_recovered(lambda x: x, minilm_tiny) == pytest.approx(1.0, abs=1e-5)
    assert downstream_recovered(lambda x: mean.expand_as(x), minilm_tiny) == pytest.approx(0.0, abs=1e-6)
    # zero ablation is not mean ablation, nor a reconstruction
    zeros = downstream_recovered(torch.zeros_like, minilm_tiny)
    assert abs(zeros) > 0.05 and zeros < 0.9


def test_reconstruction_reports_downstream_recovered_on_minilm_only(minilm_tiny):
    d = minilm_tiny.input_shape[0]
    identity = Reconstruction().evaluate(TrainedModel(LinearToy(d)), minilm_tiny, {})
    assert identity["downstream_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert identity["r2"] == pytest.approx(1.0)
    mean = LinearToy(d, decoder_scale=0.0, bias=minilm_tiny.train.mean(0))
    assert Reconstruction().evaluate(TrainedModel(mean), minilm_tiny, {})["downstream_recovered"] == pytest.approx(0.0, abs=1e-6)
    x = torch.randn(32, d)
    assert "downstream_recovered" not in Reconstruction().evaluate(TrainedModel(LinearToy(d)), Dataset("toy", x, x, {}), {})
