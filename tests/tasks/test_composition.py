import itertools

import pandas as pd
import pytest
import torch
from sklearn.metrics import r2_score

from benchmark.config import load_preset
from benchmark.data import Dataset
from benchmark.datasets import build_dataset
from benchmark.registry import VARIANTS
from benchmark.training import TrainConfig, TrainedModel, train_model
from tasks.composition import Composition, additive_pixels, compose, composed_images, heldout_metrics

SHAPE = (3, 4, 4)
TASK = Composition()


def additive_dataset(train_tuples, heldout_tuples, factor_sizes, seed=0) -> Dataset:
    """x = Σ_factor pattern[factor][value]: images exactly additive in their concepts."""
    g = torch.Generator().manual_seed(seed)
    patterns = [torch.rand(n, *SHAPE, generator=g) / len(factor_sizes) for n in factor_sizes]
    draw = lambda tuples: sum(patterns[f][tuples[:, f]] for f in range(len(factor_sizes)))  # noqa: E731
    train_tuples, heldout_tuples = torch.tensor(train_tuples), torch.tensor(heldout_tuples)
    return Dataset("additive", draw(train_tuples), draw(heldout_tuples), {"kind": "additive"},
                   train_tuples, heldout_tuples, {"factor_sizes": tuple(factor_sizes)})


def latin_square_dataset(n=3) -> Dataset:
    """Training tuples (a, b, a+b mod n): every pair of factors balanced, so the concept means
    are exact main effects; the other n³ − n² tuples are held out (never seen)."""
    everything = list(itertools.product(range(n), repeat=3))
    train = [t for t in everything if t[2] == (t[0] + t[1]) % n]
    return additive_dataset(train, [t for t in everything if t not in train], (n, n, n))


def unbalanced_dataset(seed=0) -> Dataset:
    """A seeded 20% of the tuples of 4 factors held out, as the `tuple` split does."""
    sizes = (3, 4, 2, 3)
    everything = list(itertools.product(*(range(s) for s in sizes)))
    order = torch.randperm(len(everything), generator=torch.Generator().manual_seed(seed)).tolist()
    n_out = len(everything) // 5
    heldout = [everything[i] for i in order[:n_out]]
    train = [everything[i] for i in order[n_out:]]
    return additive_dataset(train * 2, heldout, sizes, seed)


# ----- the metrics -----
def test_heldout_r2_is_sklearns_variance_weighted_r2():
    g = torch.Generator().manual_seed(0)
    x, x_hat = torch.rand(40, *SHAPE, generator=g), torch.rand(40, *SHAPE, generator=g)
    expected = r2_score(x.flatten(1).double().numpy(), x_hat.flatten(1).double().numpy(), multioutput="variance_weighted")
    assert heldout_metrics(x, x_hat)["heldout_r2"] == pytest.approx(expected, abs=1e-9)


def test_metrics_of_a_known_error():
    x = torch.full((2, 1, 2, 2), 0.5)
    x[1] = 1.0
    x_hat = x + 0.1  # mse 0.01: 20 dB; x̄ per pixel 0.75, variance 0.0625 per pixel
    metrics = heldout_metrics(x, x_hat)
    assert metrics["heldout_psnr_db"] == pytest.approx(20.0)
    assert metrics["heldout_r2"] == pytest.approx(1 - 0.01 / 0.0625)
    assert metrics["heldout_cos"] == pytest.approx(1.0)  # a uniform image scaled: same direction
    assert heldout_metrics(x, -x)["heldout_cos"] == pytest.approx(-1.0)


# ----- the composition arithmetic -----
def test_additive_pixels_is_exact_on_additive_images_with_balanced_training():
    data = latin_square_dataset()
    assert TASK.reference_rows(data, {}, 0)["additive-pixels"]["heldout_r2"] == pytest.approx(1.0, abs=1e-6)


def test_composition_without_the_mean_correction_is_clearly_worse():
    data = latin_square_dataset()
    m = data.train_concepts.shape[1]
    right = compose(data.train.flatten(1), data.train_concepts, data.test_concepts, data.concept_sizes())
    wrong = right + (m - 1) * data.train.flatten(1).mean(0)  # Σ c_v alone
    assert heldout_metrics(data.test, wrong.view_as(data.test))["heldout_r2"] < 0.0
    shuffled = right[torch.randperm(len(right), generator=torch.Generator().manual_seed(0))]
    assert heldout_metrics(data.test, shuffled.view_as(data.test))["heldout_r2"] < 0.5


def test_ridge_on_the_concept_mask_is_exact_on_additive_images_even_unbalanced():
    data = unbalanced_dataset()
    rows = TASK.reference_rows(data, {"ridge_alpha": 1e-8}, 0)
    assert rows["ridge-mask"]["heldout_r2"] == pytest.approx(1.0, abs=1e-6)
    # The means arithmetic is the balanced-design estimator: close, not exact, when unbalanced.
    assert 0.8 < rows["additive-pixels"]["heldout_r2"] < 1 - 1e-4


class AffineModel(torch.nn.Module):
    """An SAE with an affine decoder: ReLU(x E) encoder, codes D + b decoder."""

    requires = frozenset()

    def __init__(self, input_dim, n_latents, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.E = torch.randn(input_dim, n_latents, generator=g)
        self.D = torch.randn(n_latents, input_dim, generator=g) / n_latents
        self.b = torch.rand(input_dim, generator=g)

    def encode(self, x):
        return (x.flatten(1) @ self.E).relu()

    def decode(self, codes):
        return (codes @ self.D + self.b).view(-1, *SHAPE)


def test_code_space_composition_through_an_affine_decoder_is_pixel_arithmetic_on_reconstructions():
    data = unbalanced_dataset()
    model = AffineModel(data.train[0].numel(), 12)
    reconstructed = Dataset("recon", model.decode(model.encode(data.train)), data.test, {},
                            data.train_concepts, data.test_concepts, data.truth)
    assert torch.allclose(composed_images(model, data), additive_pixels(reconstructed), atol=1e-5)


# ----- the task on shapes -----
def tiny_shapes(split="tuple") -> Dataset:
    return build_dataset("shapes", {"split": split, "size": 12, "renderings": 1})


def test_skips_datasets_without_concepts_and_headlines_the_tuple_split():
    data = tiny_shapes()
    unlabelled = Dataset("plain", data.train, data.test, {})
    assert "concept" in TASK.dataset_skip_reason(unlabelled)
    assert TASK.dataset_skip_reason(data) is None
    assert TASK.skip_reason(VARIANTS.get("supervised"), unlabelled)
    assert TASK.headline_dataset(["shapes-pair", "shapes-tuple"]) == "shapes-tuple"


def trained_on(name: str, data: Dataset, epochs: int = 1) -> TrainedModel:
    """Built as the runner builds it: smoke hyperparameters, configure, then train_model."""
    cls = VARIANTS.get(name)
    hparams = next(iter(load_preset("smoke").settings(name, "shapes-tuple").values()))  # the first sweep setting
    hparams.pop("match_params_of", None)
    step = cls.latent_step(data.input_shape)
    n_latents, hparams = cls.configure(data, max(step, 32 // step * step), hparams)
    torch.manual_seed(0)
    model = cls(data.input_shape, n_latents, **hparams)
    return train_model(model, data, TrainConfig(epochs, 128, 1e-3), seed=0)


@pytest.fixture(scope="module")
def shapes_tuple():
    return tiny_shapes()


@pytest.mark.parametrize("name", VARIANTS.names())
def test_metrics_are_finite_for_every_variant(name, shapes_tuple):
    assert TASK.skip_reason(VARIANTS.get(name), shapes_tuple) is None  # images with concepts
    metrics = TASK.evaluate(trained_on(name, shapes_tuple), shapes_tuple, {})
    assert set(metrics) == set(TASK.metrics)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def test_plots_show_the_first_seed_of_each_row(tmp_path, shapes_tuple):
    artifacts = tmp_path / "artifacts"
    rows = []
    for name in ("relu", "supervised"):
        for seed in (1, 0):
            config = {"artifact_dir": artifacts, "model_name": name, "seed": seed}
            metrics = TASK.evaluate(trained_on(name, shapes_tuple), shapes_tuple, config)
            rows.append(dict(variant=name, seed=seed, value=metrics["heldout_r2"]))
    for name, metrics in TASK.reference_rows(shapes_tuple, {"artifact_dir": artifacts}, 0).items():
        rows.append(dict(variant=name, seed=0, value=metrics["heldout_r2"]))
    results = pd.DataFrame(rows).assign(task="composition", dataset=shapes_tuple.name,
                                        metric="heldout_r2", status="ok")
    figures = TASK.plots(results, tmp_path)
    assert len(figures) == 1 and figures[0][1].exists() and figures[0][1].stat().st_size > 0
    assert len(list(artifacts.glob("*.pt"))) == 6
    assert TASK.plots(results.iloc[:0], tmp_path) == []  # no results: no figure
