import math

import pandas as pd
import pytest
import torch

from benchmark.data import Dataset
from benchmark.datasets import build_dataset
from benchmark.registry import TASKS, VARIANTS
from benchmark.training.loop import TrainConfig, TrainedModel, train_model
from benchmark.variant import SAE
from tasks.atom_entropy import (RANDOM_ATOMS, AtomEntropy, atom_entropy_bits, atom_metrics, color_purity,
                                display_atoms, headline_artifacts, random_atom_entropy)
from tests.tasks._toys import AffineToy, image_dataset, trained_variant, untrained_and_trained_whitened_topk

H = W = 4


def one_hot_pixel(c=3, h=H, w=W, at=(1, 2), value=1.0):
    atom = torch.zeros(c, h, w)
    atom[0, at[0], at[1]] = value
    return atom


# ----- entropy: known answers -----
def test_one_pixel_atom_has_zero_bits():
    assert atom_entropy_bits(one_hot_pixel()[None]).item() == 0.0


def test_uniform_atom_has_log2_hw_bits_and_norm_one():
    atom = torch.full((1, 3, H, W), -0.2)  # the sign is irrelevant: energy is a²
    assert atom_entropy_bits(atom).item() == pytest.approx(math.log2(H * W))
    assert atom_metrics(atom)["entropy_norm"] == pytest.approx(1.0)


def test_energy_is_the_sum_of_squares_over_channels():
    # Pixel A: r = 1 (energy 1). Pixel B: g = b = 1/√2 (energy ½ + ½ = 1). Equal: exactly 1 bit.
    atom = torch.zeros(1, 3, H, W)
    atom[0, 0, 0, 0] = 1.0
    atom[0, 1, 3, 3], atom[0, 2, 3, 3] = 2**-0.5, -(2**-0.5)
    assert atom_entropy_bits(atom).item() == pytest.approx(1.0)
    # g = b = ½: squared energies 1 and ½ give H(⅔, ⅓) = 0.918 bits; summing |a| (energies 1
    # and 1, revision 1's rule) would give 1 bit.
    atom[0, 1, 3, 3], atom[0, 2, 3, 3] = 0.5, -0.5
    expected = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert atom_entropy_bits(atom).item() == pytest.approx(expected)


def test_entropy_is_per_atom_and_metrics_average_it():
    atoms = torch.stack([one_hot_pixel(), torch.ones(3, H, W)])
    assert atom_entropy_bits(atoms).tolist() == pytest.approx([0.0, math.log2(H * W)])
    assert atom_metrics(atoms)["entropy_bits"] == pytest.approx(math.log2(H * W) / 2)


# ----- entropy against random atoms -----
def test_random_atoms_score_one_against_random_atoms():
    # 300 Gaussian atoms from another seed: the per-atom entropy has std 0.067 bits on 3×8×8,
    # so their mean is within 0.005 of the reference (≈ 9 standard errors).
    atoms = torch.randn(300, 3, 8, 8, generator=torch.Generator().manual_seed(123))
    assert atom_metrics(atoms)["entropy_vs_random"] == pytest.approx(1.0, abs=0.005)


def test_localised_atoms_score_their_bits_over_the_random_reference():
    one_pixel = torch.stack([one_hot_pixel(h=8, w=8, at=(i, i)) for i in range(8)])
    assert atom_metrics(one_pixel)["entropy_vs_random"] == 0.0
    block = torch.zeros(1, 3, 8, 8)
    block[0, :, 2:4, 2:4] = 1.0  # 4 equal pixels: 2 bits
    reference = random_atom_entropy((3, 8, 8))
    assert atom_metrics(block)["entropy_vs_random"] == pytest.approx(2.0 / reference)
    # Random atoms are far from uniform: log2(64) = 6 bits against a reference of ≈ 5.58.
    assert 0.92 < reference / 6.0 < 0.94


def test_random_reference_sampling_error_is_below_a_tenth_of_a_percent():
    other = atom_entropy_bits(torch.randn(RANDOM_ATOMS, 3, 8, 8, generator=torch.Generator().manual_seed(7)))
    assert float(other.mean()) == pytest.approx(random_atom_entropy((3, 8, 8)), rel=1e-3)
    assert random_atom_entropy((1, 8, 8)) < random_atom_entropy((3, 8, 8))  # shape matters: 1 dof per pixel


# ----- colour purity: known answers -----
def coloured(colour, pattern=None):
    pattern = torch.rand(H, W, generator=torch.Generator().manual_seed(1)) if pattern is None else pattern
    return torch.tensor(colour, dtype=torch.float32)[:, None, None] * pattern


def test_pure_red_and_grey_atoms_have_purity_one():
    atoms = torch.stack([coloured((1, 0, 0)), coloured((0, 0, -2)), coloured((1, 1, 1))])
    assert color_purity(atoms).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_yellow_atom_purity_is_its_cosine_with_grey():
    # (1,1,0)/√2: cosine 1/√2 with red and green, 2/√6 = √(2/3) with grey: the largest wins.
    assert color_purity(coloured((1, 1, 0))[None]).item() == pytest.approx(math.sqrt(2 / 3))


def test_colour_vector_is_the_leading_singular_vector_not_the_mean_colour():
    # Red with energy 2 on one pixel, green with energy 1 on another: the leading left
    # singular vector is pure red (purity 1); the mean colour (2, 1, 0)/√5 would give 0.894.
    atom = torch.zeros(1, 3, H, W)
    atom[0, 0, 0, 0], atom[0, 1, 2, 2] = 2.0, 1.0
    assert color_purity(atom).item() == pytest.approx(1.0)


def test_color_purity_is_omitted_for_single_channel_atoms():
    assert "color_purity" not in atom_metrics(torch.rand(5, 1, H, W))
    assert "color_purity" in atom_metrics(torch.rand(5, 3, H, W))


# ----- the base class's impulse-response atoms -----
def test_default_atoms_of_an_affine_decoder_are_its_dictionary():
    dictionary, bias = torch.randn(6, 3, H, W), torch.rand(3, H, W)
    toy = AffineToy(dictionary, bias, torch.zeros(3 * H * W, 6))
    torch.testing.assert_close(SAE.atoms(toy), dictionary)
    # The bias is removed: a decoder response without "minus the zero code" would fail here.
    assert not torch.allclose(toy.decode(torch.eye(6)).view_as(dictionary), dictionary)


def test_display_keeps_zero_at_mid_grey_and_fills_the_range():
    shown = display_atoms(torch.tensor([[[[0.0, 2.0], [-1.0, 0.5]]]]))
    assert shown.flatten().tolist() == pytest.approx([0.5, 1.0, 0.25, 0.625])


# ----- the task on a hand-built model -----
def toy_model_and_data():
    """Four latents: a one-pixel atom, a uniform atom, a dead latent (it holds a one-pixel atom
    that would lower the mean if it were counted) and a two-pixel atom."""
    dictionary = torch.zeros(4, 3, H, W)
    dictionary[0, 0, 1, 1] = 1.0
    dictionary[1] = 0.1
    dictionary[2, 2, 0, 0] = 1.0
    dictionary[3, 1, 0, 0] = dictionary[3, 1, 3, 3] = 0.7
    encoder = torch.ones(3 * H * W, 4)
    encoder[:, 2] = -1.0  # inputs are ≥ 0, so latent 2 never fires
    data = image_dataset(n_train=8, n_test=20, shape=(3, H, W), concepts=False)
    return AffineToy(dictionary, torch.full((3, H, W), 0.5), encoder), data


def fake_matched(monkeypatch, settings):
    """`benchmark.report.matched.headline_settings` answering `settings` (the tests' results tables
    carry no L0 to choose from)."""
    monkeypatch.setattr("benchmark.report.matched.headline_settings", lambda results, task, dataset: settings)


def test_evaluate_averages_over_alive_atoms_only(tmp_path, monkeypatch):
    model, data = toy_model_and_data()
    task = AtomEntropy()
    config = {"artifact_dir": tmp_path / "artifacts", "model_name": "toy", "seed": 3, "setting": "k=4"}
    metrics = task.evaluate(TrainedModel(model=model), data, config)
    assert metrics["alive_atoms"] == 3
    assert metrics["entropy_bits"] == pytest.approx((0 + math.log2(H * W) + 1) / 3)
    assert metrics["entropy_norm"] == pytest.approx((0 + 1 + 1 / math.log2(H * W)) / 3)
    assert metrics["entropy_vs_random"] == pytest.approx(metrics["entropy_bits"] / random_atom_entropy((3, H, W)))
    assert metrics["color_purity"] == pytest.approx(1.0)
    [saved_path] = (tmp_path / "artifacts" / "atom_entropy" / "tiny").glob("*.pt")
    saved = torch.load(saved_path)
    assert sorted(saved["latents"].tolist()) == [0, 1, 3]  # the dead latent is not shown
    assert saved["label"] == {"variant": "toy", "seed": 3, "setting": "k=4"}

    results = pd.DataFrame([dict(task="atom_entropy", dataset="tiny", variant="toy", seed=3, metric=m,
                                 value=v, status="ok") for m, v in metrics.items()])
    fake_matched(monkeypatch, {"toy": "k=4"})
    [(title, path)] = task.plots(results, tmp_path)
    assert path.exists() and path.suffix == ".png" and "tiny" in title


def test_gallery_shows_the_headline_setting_and_the_lowest_seed(tmp_path, monkeypatch):
    model, data = toy_model_and_data()
    task = AtomEntropy()
    cells = [("toy", "k=4", 1), ("toy", "k=4", 0), ("toy", "k=8", 0), ("pca", "L0=4", 2), ("other", "k=2", 0)]
    folder = tmp_path / "artifacts" / "atom_entropy" / "tiny"
    for variant, setting, seed in cells:
        # File names are the runner's business (a distinct model_name keeps today's names
        # apart); the task finds its cells by the label saved inside.
        config = {"artifact_dir": tmp_path / "artifacts", "model_name": f"{variant}-{setting}", "seed": seed}
        before = set(folder.glob("*.pt"))
        task.evaluate(TrainedModel(model=model), data, config)
        [path] = set(folder.glob("*.pt")) - before
        blob = torch.load(path)
        blob["label"] = {"variant": variant, "seed": seed, "setting": setting}
        torch.save(blob, path)
    fake_matched(monkeypatch, {"toy": "k=4", "pca": "L0=4"})  # "other" reached no headline L0
    chosen = headline_artifacts(pd.DataFrame(), tmp_path, "atom_entropy", ".pt", lambda p: torch.load(p)["label"])
    labels = {v: torch.load(p)["label"] for v, p in chosen["tiny"].items()}
    assert labels == {"toy": {"variant": "toy", "seed": 0, "setting": "k=4"},
                      "pca": {"variant": "pca", "seed": 2, "setting": "L0=4"}}


def test_registered_under_its_name():
    assert TASKS.get("atom_entropy") is AtomEntropy
    assert AtomEntropy.headline == "entropy_vs_random" and AtomEntropy.metrics["entropy_vs_random"] is False


def test_non_image_data_is_skipped():
    vectors = Dataset(name="vec", train=torch.rand(4, 10), test=torch.rand(4, 10), config={})
    assert "needs images" in AtomEntropy().skip_reason(VARIANTS.get("relu"), vectors)


# ----- untrained against trained -----
@pytest.fixture(scope="module")
def untrained_and_trained_topk():
    return untrained_and_trained_whitened_topk()


def test_training_localises_the_atoms_of_whitened_patches(untrained_and_trained_topk):
    # Untrained atoms are random Gaussian directions: 1 × random. Measured after training: 0.944.
    data, untrained, trained = untrained_and_trained_topk
    before = AtomEntropy().evaluate(untrained, data, {})["entropy_vs_random"]
    after = AtomEntropy().evaluate(trained, data, {})["entropy_vs_random"]
    assert before == pytest.approx(1.0, abs=0.01)
    assert after < before - 0.04


# ----- every registered variant -----
@pytest.mark.parametrize("variant", VARIANTS.names())
def test_every_image_variant_gets_finite_metrics(variant):
    data = image_dataset()
    task = AtomEntropy()
    if task.skip_reason(VARIANTS.get(variant), data):
        pytest.skip(task.skip_reason(VARIANTS.get(variant), data))
    metrics = task.evaluate(trained_variant(variant, data, epochs=1), data, {})
    assert set(metrics) == {"entropy_bits", "entropy_norm", "entropy_vs_random", "color_purity", "alive_atoms"}
    assert all(math.isfinite(v) for v in metrics.values())
    assert 0 <= metrics["entropy_norm"] <= 1 + 1e-9 and 0.5 <= metrics["color_purity"] <= 1 + 1e-9
