import itertools
import sys
import types

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import r2_score

from benchmark.config import load_preset
from benchmark.data import Dataset
from benchmark.datasets import build_dataset
from benchmark.datasets.shapes2 import N_OBJECTS, canonical
from benchmark.registry import CONTROLS, VARIANTS
from benchmark.training.loop import TrainConfig, TrainedModel, train_model
from benchmark.variant import SAE
from tasks.composition import (Composition, _load_samples, additive_pixels, code_r2, compose,
                               composed_samples, heldout_metrics, memoriser, seen_metrics)

SHAPE = (3, 4, 4)
TASK = Composition()


def additive_dataset(train_tuples, heldout_tuples, factor_sizes, seed=0, shape=SHAPE, seen=False) -> Dataset:
    """x = Σ_factor pattern[factor][value]: samples exactly additive in their concepts."""
    g = torch.Generator().manual_seed(seed)
    patterns = [torch.rand(n, *shape, generator=g) / len(factor_sizes) for n in factor_sizes]
    draw = lambda tuples: sum(patterns[f][tuples[:, f]] for f in range(len(factor_sizes)))  # noqa: E731
    train_tuples, heldout_tuples = torch.tensor(train_tuples), torch.tensor(heldout_tuples)
    truth = {"factor_sizes": tuple(factor_sizes)}
    if seen:
        seen_tuples = train_tuples.unique(dim=0)
        truth.update(seen_test=draw(seen_tuples), seen_test_concepts=seen_tuples)
    return Dataset("additive", draw(train_tuples), draw(heldout_tuples), {"kind": "additive"},
                   train_tuples, heldout_tuples, truth)


def latin_square_dataset(n=3) -> Dataset:
    """Training tuples (a, b, a+b mod n): every pair of factors balanced, so the concept means
    are exact main effects; the other n³ − n² tuples are held out (never seen)."""
    everything = list(itertools.product(range(n), repeat=3))
    train = [t for t in everything if t[2] == (t[0] + t[1]) % n]
    return additive_dataset(train, [t for t in everything if t not in train], (n, n, n))


def unbalanced_dataset(seed=0, shape=SHAPE, seen=False) -> Dataset:
    """A seeded 20% of the tuples of 4 factors held out, as the `tuple` split does."""
    sizes = (3, 4, 2, 3)
    everything = list(itertools.product(*(range(s) for s in sizes)))
    order = torch.randperm(len(everything), generator=torch.Generator().manual_seed(seed)).tolist()
    n_out = len(everything) // 5
    heldout = [everything[i] for i in order[:n_out]]
    train = [everything[i] for i in order[n_out:]]
    return additive_dataset(train * 2, heldout, sizes, seed, shape, seen)


def means_arithmetic(values, concepts, targets, sizes):
    """Revision 1's composition: Σ_i c_{v_i} − (m − 1)·z̄ with c_v the mean of value v."""
    out = -(len(sizes) - 1) * values.mean(0).expand(len(targets), -1)
    for f, n in enumerate(sizes):
        one_hot = F.one_hot(concepts[:, f], n).to(values.dtype)
        out = out + ((one_hot.T @ values) / one_hot.sum(0)[:, None])[targets[:, f]]
    return out


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
    assert "heldout_psnr_db" not in heldout_metrics(x.flatten(1), x_hat.flatten(1), image=False)


def test_seen_r2_and_the_gap():
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert seen_metrics(0.25, x, x) == {"seen_r2": 1.0, "generalization_gap": 0.75}
    mean_only = x.mean(0).expand_as(x)  # R² 0 by definition
    assert seen_metrics(0.25, x, mean_only) == {"seen_r2": 0.0, "generalization_gap": -0.25}


def test_code_r2_is_one_for_equal_codes_zero_for_their_mean_and_undefined_for_constant_codes():
    g = torch.Generator().manual_seed(0)
    codes = torch.rand(30, 6, generator=g)
    assert code_r2(codes, codes) == pytest.approx(1.0)
    assert code_r2(codes, codes.mean(0).expand_as(codes)) == pytest.approx(0.0, abs=1e-12)
    assert code_r2(torch.ones(30, 6), codes) is None


# ----- the composition arithmetic -----
def test_least_squares_composition_is_the_means_arithmetic_on_a_balanced_design():
    data = latin_square_dataset()
    values, sizes = data.train.flatten(1), data.concept_sizes()
    ours = compose(values, data.train_concepts, data.test_concepts, sizes)
    assert torch.allclose(ours, means_arithmetic(values, data.train_concepts, data.test_concepts, sizes), atol=1e-6)
    assert TASK.reference_rows(data, {}, 0)["additive-pixels"]["heldout_r2"] == pytest.approx(1.0, abs=1e-6)


def test_composition_without_the_intercept_correction_is_clearly_worse():
    data = latin_square_dataset()
    m = data.train_concepts.shape[1]
    right = compose(data.train.flatten(1), data.train_concepts, data.test_concepts, data.concept_sizes())
    wrong = right + (m - 1) * data.train.flatten(1).mean(0)  # Σ c_v alone
    assert heldout_metrics(data.test, wrong.view_as(data.test))["heldout_r2"] < 0.0
    shuffled = right[torch.randperm(len(right), generator=torch.Generator().manual_seed(0))]
    assert heldout_metrics(data.test, shuffled.view_as(data.test))["heldout_r2"] < 0.5


def test_additive_references_are_exact_on_additive_data_even_unbalanced_where_means_are_not():
    data = unbalanced_dataset()
    rows = TASK.reference_rows(data, {"ridge_alpha": 1e-8}, 0)
    assert rows["additive-pixels"]["heldout_r2"] == pytest.approx(1.0, abs=1e-6)
    assert rows["ridge-mask"]["heldout_r2"] == pytest.approx(1.0, abs=1e-6)
    means = means_arithmetic(data.train.flatten(1), data.train_concepts, data.test_concepts, data.concept_sizes())
    assert 0.8 < heldout_metrics(data.test, means.view_as(data.test))["heldout_r2"] < 1 - 1e-4


def test_composing_a_value_never_seen_in_training_is_refused():
    data = latin_square_dataset()
    with pytest.raises(ValueError, match="never seen"):
        compose(data.train.flatten(1), data.train_concepts[:, :1] * 0, data.test_concepts[:, :1], (3,))


def test_the_memoriser_recalls_seen_tuples_and_averages_the_nearest_for_unseen_ones():
    # tuples (0,0), (0,1), (1,0) seen twice each; (1,1) held out: its nearest seen tuples
    # (one differing factor) are (0,1) and (1,0)
    train_concepts = torch.tensor([[0, 0], [0, 1], [1, 0]]).repeat(2, 1)
    train = torch.tensor([[1.0, 0], [0, 1], [2, 2], [3.0, 0], [0, 3], [4, 4]])  # per-tuple means (2,0) (0,2) (3,3)
    data = Dataset("memo", train, torch.zeros(1, 2), {}, train_concepts, torch.tensor([[1, 1]]),
                   {"factor_sizes": (2, 2)})
    assert torch.equal(memoriser(data), torch.tensor([[1.5, 2.5]]))
    assert torch.equal(memoriser(data, torch.tensor([[0, 1], [0, 0]])), torch.tensor([[0.0, 2], [2, 0]]))


class AffineModel(torch.nn.Module):
    """An SAE with an affine decoder: ReLU(x E) encoder, codes D + b decoder."""

    requires = frozenset()

    def __init__(self, input_dim, n_latents, seed=0, shape=SHAPE):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.shape = shape
        self.E = torch.randn(input_dim, n_latents, generator=g)
        self.D = torch.randn(n_latents, input_dim, generator=g) / n_latents
        self.b = torch.rand(input_dim, generator=g)

    def encode(self, x):
        return (x.flatten(1) @ self.E).relu()

    def decode(self, codes):
        return (codes @ self.D + self.b).view(-1, *self.shape)


def test_code_space_composition_through_an_affine_decoder_is_pixel_arithmetic_on_reconstructions():
    data = unbalanced_dataset()
    model = AffineModel(data.train[0].numel(), 12)
    reconstructed = Dataset("recon", model.decode(model.encode(data.train)), data.test, {},
                            data.train_concepts, data.test_concepts, data.truth)
    assert torch.allclose(composed_samples(model, data), additive_pixels(reconstructed), atol=1e-5)


# ----- known answers on two objects in disjoint slots -----
@pytest.fixture(scope="module")
def two_slots():
    """shapes2 without jitter: every image is exactly its left object plus its right object."""
    return build_dataset("shapes2", {"slot": 8, "renderings": 1, "position_jitter": 0.0, "colour_jitter": 0.0})


def test_on_exactly_slot_additive_images_additive_pixels_is_exact_and_the_memoriser_is_not(two_slots):
    rows = TASK.reference_rows(two_slots, {}, 0)
    additive, memo = rows["additive-pixels"], rows["memoriser"]
    assert additive["heldout_r2"] == pytest.approx(1.0, abs=1e-6)
    assert additive["seen_r2"] == pytest.approx(1.0, abs=1e-6)
    assert additive["generalization_gap"] == pytest.approx(0.0, abs=1e-6)
    assert memo["seen_r2"] == pytest.approx(1.0, abs=1e-6)  # it recalls every seen pair
    assert memo["heldout_r2"] < 0.8 and memo["generalization_gap"] > 0.2  # ... and composes none
    assert rows["ridge-mask"]["heldout_r2"] > 0.99


class LookupModel(SAE):
    """Decoder rows = `atoms`; encode returns the code stored for the nearest stored sample."""

    def __init__(self, atoms, samples, codes):
        super().__init__(tuple(atoms.shape[1:]), atoms.shape[0])
        self.W_dec = torch.nn.Parameter(atoms.flatten(1).clone())
        self.register_buffer("samples", samples.flatten(1))
        self.register_buffer("codes", codes.float())

    def encode(self, x):
        return self.codes[torch.cdist(x.flatten(1), self.samples).argmin(1)]

    def decode(self, codes):
        return (codes @ self.W_dec).view(-1, *self.input_shape)

    def loss(self, x, x_hat, codes):
        return (x - x_hat).pow(2).mean(), {}


def every_pair_sample(data):
    seen = data.truth
    return (torch.cat([data.train, data.test, seen["seen_test"]]),
            torch.cat([data.train_concepts, data.test_concepts, seen["seen_test_concepts"]]))


def object_oracle(data, slot=8) -> LookupModel:
    """The true dictionary: one atom per object per slot; the code of a pair is the one-hot of
    its left object beside the one-hot of its right object (additive in the concepts)."""
    objects = torch.arange(N_OBJECTS)
    left = canonical(torch.stack([objects, objects], 1), slot)
    atoms = torch.cat([left * (torch.arange(2 * slot) < slot), left * (torch.arange(2 * slot) >= slot)])
    samples, pairs = every_pair_sample(data)
    return LookupModel(atoms, samples, torch.cat([F.one_hot(pairs[:, 0], N_OBJECTS), F.one_hot(pairs[:, 1], N_OBJECTS)], 1))


def pair_memoriser_model(data, slot=8) -> LookupModel:
    """A dictionary of whole pairs, one latent per pair: exact on every pair, additive in nothing."""
    pairs = torch.cartesian_prod(torch.arange(N_OBJECTS), torch.arange(N_OBJECTS))
    samples, sample_pairs = every_pair_sample(data)
    return LookupModel(canonical(pairs, slot), samples, F.one_hot(sample_pairs[:, 0] * N_OBJECTS + sample_pairs[:, 1], len(pairs)))


def test_an_oracle_dictionary_composes_exactly_and_a_pair_dictionary_does_not(two_slots):
    oracle = TASK.evaluate(TrainedModel(model=object_oracle(two_slots)), two_slots, {})
    assert oracle["code_r2"] == pytest.approx(1.0, abs=1e-6)
    assert oracle["heldout_r2"] == pytest.approx(1.0, abs=1e-5) and oracle["seen_r2"] == pytest.approx(1.0, abs=1e-5)
    pairs = TASK.evaluate(TrainedModel(model=pair_memoriser_model(two_slots)), two_slots, {})
    assert pairs["code_r2"] < 0.1  # a held-out pair's own latent never fired in training
    assert pairs["seen_r2"] == pytest.approx(1.0, abs=1e-5)


# ----- the task on data -----
def test_vectors_with_concepts_work_without_image_metrics():
    data = unbalanced_dataset(shape=(12,), seen=True)  # a `prompts`-like vector dataset
    model = AffineModel(12, 8, shape=(12,))
    metrics = TASK.evaluate(TrainedModel(model=model), data, {"artifact_dir": "/nonexistent", "model_name": "m"})
    assert set(metrics) == set(TASK.metrics) - {"heldout_psnr_db"}
    rows = TASK.reference_rows(data, {}, 0)
    assert set(rows) == {"additive-pixels", "ridge-mask", "memoriser"}
    assert rows["additive-pixels"]["heldout_r2"] == pytest.approx(1.0, abs=1e-6)


def tiny_shapes(split="tuple") -> Dataset:
    return build_dataset("shapes", {"split": split, "size": 12, "renderings": 1})


def test_skips_datasets_without_concepts_and_headlines_prompts_then_the_tuple_split():
    data = tiny_shapes()
    unlabelled = Dataset("plain", data.train, data.test, {})
    assert "concept" in TASK.dataset_skip_reason(unlabelled)
    assert TASK.dataset_skip_reason(data) is None
    assert TASK.skip_reason(VARIANTS.get("supervised"), unlabelled)
    assert TASK.headline_dataset(["shapes-pair", "shapes-tuple"]) == "shapes-tuple"
    assert TASK.headline_dataset(["shapes-tuple", "prompts-pair", "prompts-tuple", "shapes2"]) == "prompts-tuple"
    assert TASK.headline_dataset(["shapes2"]) == "shapes2"


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
    expected = set(TASK.metrics) - ({"code_r2"} if name == "supervised" else set())  # it has no encoder of samples
    assert set(metrics) == expected
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def test_a_control_fitted_in_closed_form_is_scored_too(shapes_tuple):
    pca = CONTROLS.get("pca")(shapes_tuple.input_shape, 8, k=8)
    pca.fit(shapes_tuple.train)
    metrics = TASK.evaluate(TrainedModel(model=pca), shapes_tuple, {})
    assert set(metrics) == set(TASK.metrics)
    # a linear code of a linear projection: the composed code is the projection of the composed
    # pixels, so code_r2 equals the additive fit's R² in the PCA subspace, well below 1 here
    assert 0 < metrics["code_r2"] < 1


# ----- the figure -----
def save_cell(artifacts, data, name, seed, setting, value):
    model = trained_on(name, data)
    config = {"artifact_dir": artifacts, "model_name": name, "seed": seed, "setting": setting}
    metrics = TASK.evaluate(model, data, config)
    return dict(variant=name, seed=seed, setting=setting, l0=value, value=metrics["heldout_r2"])


def test_the_figure_draws_each_variant_at_its_headline_setting_and_the_references(tmp_path, shapes_tuple, monkeypatch):
    artifacts = tmp_path / "artifacts"
    rows = [save_cell(artifacts, shapes_tuple, "relu", seed, setting, l0)
            for seed in (1, 0) for setting, l0 in (("l1_coeff=1", 4.0), ("l1_coeff=0.1", 16.0))]
    rows.append(save_cell(artifacts, shapes_tuple, "supervised", 0, "block_dim=10", 40.0))
    for name, metrics in TASK.reference_rows(shapes_tuple, {"artifact_dir": artifacts}, 0).items():
        rows.append(dict(variant=name, seed=0, setting="", l0=None, value=metrics["heldout_r2"]))
    results = pd.DataFrame(rows).assign(task="composition", dataset=shapes_tuple.name, metric="heldout_r2", status="ok")

    # The real headline_settings: the setting whose L0 is nearest 16 (no preset in the results).
    figures = TASK.plots(results, tmp_path)
    assert len(figures) == 1 and figures[0][1].exists() and figures[0][1].stat().st_size > 0
    directory = artifacts / "composition" / shapes_tuple.name
    samples = _load_samples(directory, {"relu": "l1_coeff=0.1", "supervised": "block_dim=10", "memoriser": None})
    assert list(samples) == ["memoriser", "supervised", "relu"]  # references first
    assert samples["relu"]["setting"] == "l1_coeff=0.1" and samples["relu"]["seed"] == 0

    # A stand-in that picks the other setting: the figure follows it.
    picked = {}

    def stand_in(results, task, dataset):
        picked[dataset] = task
        return {"relu": "l1_coeff=1"}
    monkeypatch.setitem(sys.modules, "benchmark.report.matched", types.SimpleNamespace(headline_settings=stand_in))
    assert len(TASK.plots(results, tmp_path)) == 1 and picked == {shapes_tuple.name: "composition"}
    assert _load_samples(directory, {"relu": "l1_coeff=1"})["relu"]["setting"] == "l1_coeff=1"
    assert TASK.plots(results.iloc[:0], tmp_path) == []  # no results: no figure


def test_vector_datasets_save_no_images(tmp_path):
    data = unbalanced_dataset(shape=(12,), seen=True)
    TASK.evaluate(TrainedModel(model=AffineModel(12, 8, shape=(12,))), data,
                  {"artifact_dir": tmp_path, "model_name": "m", "seed": 0})
    TASK.reference_rows(data, {"artifact_dir": tmp_path}, 0)
    assert not list(tmp_path.rglob("*.pt"))
