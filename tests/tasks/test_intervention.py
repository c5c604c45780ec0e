import math

import pandas as pd
import pytest
import torch
from sklearn.metrics import r2_score

from benchmark.data import Dataset
from benchmark.registry import TASKS, VARIANTS
from benchmark.training import TrainedModel
from tasks._activity import firing_order
from tasks.intervention import (ALPHAS, Intervention, PooledR2, chosen_latents, decode_edits,
                                edit_effects, strength_cv, unit_edit_strength)
from tests.tasks._toys import AffineToy, image_dataset, trained_variant

SHAPE = (3, 4, 4)


def linear_decoder(dictionary, bias):
    return lambda codes: (codes @ dictionary.flatten(1) + bias.flatten()).view(-1, *bias.shape)


def pixel_r2(decode, codes, latents, scales, clamp=True):
    r2 = PooledR2()
    for k, s in zip(latents, scales):
        r2.add(*edit_effects(decode, codes, k, s, ALPHAS, clamp=clamp))
    return r2.value()


# ----- pooled R² -----
def test_pooled_r2_matches_sklearn_on_the_flattened_values():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(5, 7, generator=g, dtype=torch.float64) + 3.0  # a non-zero mean: the grand mean matters
    prediction = target + 0.5 * torch.randn(5, 7, generator=g, dtype=torch.float64)
    r2 = PooledR2()
    r2.add(target[:2], prediction[:2])  # accumulated in pieces, as the task does
    r2.add(target[2:], prediction[2:])
    assert r2.value() == pytest.approx(r2_score(target.flatten().numpy(), prediction.flatten().numpy()), rel=1e-9)


# ----- linearity: known answers -----
def mid_grey_setting(n_images=6, n_latents=4):
    g = torch.Generator().manual_seed(1)
    dictionary = 0.02 * torch.randn(n_latents, *SHAPE, generator=g)
    codes = torch.rand(n_images, n_latents, generator=g)
    return dictionary, torch.full(SHAPE, 0.5), codes


def test_linear_decoder_inside_the_unit_range_gives_r2_one():
    dictionary, bias, codes = mid_grey_setting()
    decode = linear_decoder(dictionary, bias)
    assert 0.3 < decode(codes).min() and decode(codes).max() < 0.7  # clamp01 does nothing here
    assert pixel_r2(decode, codes, [0, 1, 2, 3], [0.5, 1.0, 1.5, 2.0]) == pytest.approx(1.0, abs=1e-9)


def test_linear_decoder_without_clamping_gives_r2_one_whatever_the_edit_size():
    dictionary, bias, codes = mid_grey_setting()
    decode = linear_decoder(50 * dictionary, bias)  # edits far outside [0, 1]
    assert pixel_r2(decode, codes, [0, 3], [1.0, 2.0], clamp=False) == pytest.approx(1.0, abs=1e-9)
    assert pixel_r2(decode, codes, [0, 3], [1.0, 2.0], clamp=True) < 0.9  # clamp01 now bites


def test_a_saturating_decoder_gives_clearly_lower_r2():
    dictionary, bias, codes = mid_grey_setting()
    linear = linear_decoder(50 * dictionary, torch.zeros(SHAPE))
    sigmoid = lambda z: torch.sigmoid(4 * linear(z))  # noqa: E731
    assert pixel_r2(sigmoid, codes, [0, 1, 2, 3], [1.0] * 4) < 0.8


def test_r2_color_ignores_what_averages_out_within_each_channel():
    # decode(z) = 0.5 + 0.05·z·red + 0.02·z²·B (inside (0, 1)), with B zero-mean in every channel: the pixels
    # respond quadratically (pixel R² < 1) but each channel's mean responds linearly (R² = 1).
    red = torch.zeros(SHAPE, dtype=torch.float64)
    red[0] = 1.0
    zero_mean = torch.zeros(SHAPE, dtype=torch.float64)
    zero_mean[:, 0, 0], zero_mean[:, 1, 1] = 1.0, -1.0
    decode = lambda z: 0.5 + 0.05 * z[:, :, None, None] * red + 0.02 * z[:, :, None, None] ** 2 * zero_mean  # noqa: E731
    codes = torch.rand(6, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    actual, predicted = edit_effects(decode, codes, 0, 1.0, ALPHAS)
    pixel, colour = PooledR2(), PooledR2()
    pixel.add(actual, predicted)
    colour.add(actual.mean((-2, -1)), predicted.mean((-2, -1)))
    assert colour.value() == pytest.approx(1.0, abs=1e-9)
    assert pixel.value() < 0.95


# ----- strength -----
def test_strength_is_the_clamped_effect_of_one_typical_activation():
    # Latent 0: one pixel at 0.1, scale 3, around mid-grey: ‖Δ‖ = 0.3 (per unit of code it would
    # be the atom norm, 0.1, the same for every unit-norm dictionary whatever its codes).
    # Latent 1: one pixel at 1.0 on a pixel at 0.9: clamp01 cuts the change to 0.1.
    dictionary = torch.zeros(2, *SHAPE)
    dictionary[0, 0, 0, 0], dictionary[1, 1, 2, 2] = 0.1, 1.0
    bias = torch.full(SHAPE, 0.5)
    bias[1, 2, 2] = 0.9
    decode = linear_decoder(dictionary, bias)
    codes = torch.zeros(5, 2)
    assert unit_edit_strength(decode, codes, [0], [3.0]) == pytest.approx(0.3)
    assert unit_edit_strength(decode, codes, [1], [1.0]) == pytest.approx(0.1)
    assert unit_edit_strength(decode, codes, [0, 1], [3.0, 1.0]) == pytest.approx(0.2)


def test_batched_edits_equal_one_decode_per_edit():
    dictionary, bias, codes = mid_grey_setting()
    decode = lambda z: torch.sigmoid(linear_decoder(dictionary, bias)(z) * 30)  # noqa: E731
    batched = decode_edits(decode, codes, [2, 0], [0.7, 1.3], [-1.0, 0.5])
    for i, (k, s) in enumerate([(2, 0.7), (0, 1.3)]):
        for j, m in enumerate([-1.0, 0.5]):
            edited = codes.clone()
            edited[:, k] += m * s
            torch.testing.assert_close(batched[i, j], decode(edited))


def test_strength_cv_of_known_traces():
    assert strength_cv([5.0] * 6) == 0.0
    assert strength_cv([100.0, 7.0, 1.0, 3.0]) == pytest.approx(0.5)  # second half [1, 3]: std 1, mean 2
    assert strength_cv([9.0, 2.0, 4.0]) == pytest.approx(1 / 3)  # epochs 2..3 of 3
    assert strength_cv([1.0, 2.0]) is None and strength_cv([1.0]) is None  # one value: no spread
    assert strength_cv([1.0, 2.0, float("nan"), 3.0]) is None  # an epoch with no active latent


# ----- latent choice -----
def test_most_frequent_latents_and_their_mean_nonzero_activation():
    # Latent 2 fires on 3 rows, latent 0 on 2, latent 1 on 2 but weaker, latent 3 never.
    codes = torch.tensor([[1.0, 0.5, 2.0, 0.0], [3.0, 0.0, 4.0, 0.0], [0.0, 0.5, 6.0, 0.0]])
    counts, order = firing_order(codes)
    assert counts.tolist() == [2, 2, 3, 0] and order.tolist()[:3] == [2, 0, 1]
    toy = AffineToy(torch.zeros(4, 4, 1, 1), torch.zeros(4, 1, 1), torch.eye(4))  # codes = images
    _, latents, scales = chosen_latents(toy, codes.view(3, 4, 1, 1), None)
    assert latents == [2, 0, 1] and scales == pytest.approx([4.0, 2.0, 0.5])


# ----- the task on a hand-built model -----
def toy_model_and_data():
    """A linear model whose every decode, edits included, stays well inside (0, 1)."""
    dictionary, bias, _ = mid_grey_setting(n_latents=20)
    data = image_dataset(n_train=8, n_test=70, shape=SHAPE, concepts=False)
    encoder = torch.rand(math.prod(SHAPE), 20, generator=torch.Generator().manual_seed(2)) - 0.45
    model = AffineToy(dictionary / 10, bias, encoder)
    assert (model.encode(data.test) > 0).float().mean() > 0.3
    assert_inside_unit_range(model, data)
    return model, data


def assert_inside_unit_range(model, data):
    codes = model.encode(data.test)
    extreme = codes.abs().sum(1).max() + 2 * codes.max()  # the largest edit included
    assert extreme * model.dictionary.abs().max() < 0.4  # so |decode - 0.5| < 0.4


def test_evaluate_on_a_linear_model_inside_the_unit_range(tmp_path):
    model, data = toy_model_and_data()
    task = Intervention()
    trace = [{"strength": s} for s in (0.5, 0.4, 0.3, 0.2, 0.3, 0.4)]
    config = {"artifact_dir": tmp_path / "artifacts", "model_name": "toy", "seed": 0}
    metrics = task.evaluate(TrainedModel(model=model, history={"intervention": trace}), data, config)
    assert metrics["r2_pixel"] == pytest.approx(1.0, abs=1e-9)
    assert metrics["r2_color"] == pytest.approx(1.0, abs=1e-9)
    assert metrics["strength_cv"] == pytest.approx(math.sqrt(2 / 3) * 0.1 / 0.3)  # epochs 4..6

    results = pd.DataFrame([dict(task="intervention", dataset="tiny", variant="toy", seed=0, metric=m,
                                 value=v, status="ok") for m, v in metrics.items()])
    [(title, path)] = task.plots(results, tmp_path)
    assert path.exists() and path.suffix == ".png"


def test_epoch_callback_measures_mean_typical_activation_times_atom_norm():
    model, data = toy_model_and_data()
    with torch.no_grad():
        model.dictionary.div_(model.dictionary.norm(dim=1, keepdim=True)).mul_(0.01)  # norm 0.01
    assert_inside_unit_range(model, data)
    _, _, scales = chosen_latents(model, data.test[:64], None)
    out = Intervention().epoch_callback(model, data, epoch=0)
    assert len(scales) == 16
    assert out["strength"] == pytest.approx(0.01 * sum(scales) / len(scales), rel=1e-5)


def test_non_image_data_is_skipped():
    vectors = Dataset(name="vec", train=torch.rand(4, 10), test=torch.rand(4, 10), config={})
    assert "needs images" in Intervention().skip_reason(VARIANTS.get("relu"), vectors)
    assert TASKS.get("intervention") is Intervention


# ----- every registered variant -----
@pytest.mark.parametrize("variant", VARIANTS.names())
def test_every_image_variant_gets_finite_metrics(variant):
    data = image_dataset()
    task = Intervention()
    if task.skip_reason(VARIANTS.get(variant), data):
        pytest.skip(task.skip_reason(VARIANTS.get(variant), data))
    trained = trained_variant(variant, data, epochs=3, callbacks={"intervention": task.epoch_callback})
    assert len(trained.history["intervention"]) == 3
    metrics = task.evaluate(trained, data, {})
    assert set(metrics) == {"r2_pixel", "r2_color", "strength_cv"}
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["r2_pixel"] <= 1.0 and metrics["strength_cv"] >= 0.0
