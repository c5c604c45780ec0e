import math

import pandas as pd
import pytest
import torch

from benchmark.data import Dataset
from benchmark.registry import TASKS, VARIANTS
from benchmark.training import TrainedModel
from benchmark.variant import SAE
from tasks.atom_entropy import AtomEntropy, atom_entropy_bits, atom_metrics, color_purity, display_atoms
from tests.tasks._toys import AffineToy, image_dataset, trained_variant

H = W = 4


def one_hot_pixel(c=3, h=H, w=W, at=(1, 2), value=1.0):
    atom = torch.zeros(c, h, w)
    atom[0, at[0], at[1]] = value
    return atom


# ----- entropy: known answers -----
def test_one_pixel_atom_has_zero_bits():
    assert atom_entropy_bits(one_hot_pixel()[None]).item() == 0.0


def test_uniform_atom_has_log2_hw_bits_and_norm_one():
    atom = torch.full((1, 3, H, W), -0.2)  # the sign is irrelevant: energy is |a|
    assert atom_entropy_bits(atom).item() == pytest.approx(math.log2(H * W))
    assert atom_metrics(atom)["entropy_norm"] == pytest.approx(1.0)


def test_two_pixel_atom_sums_absolute_values_over_channels():
    # Pixel A: |r| = 1. Pixel B: |g| + |b| = 0.5 + 0.5 = 1. Equal energies: exactly 1 bit.
    # (Summing squares instead would give energies 1 and 0.5, and 0.918 bits.)
    atom = torch.zeros(1, 3, H, W)
    atom[0, 0, 0, 0] = 1.0
    atom[0, 1, 3, 3], atom[0, 2, 3, 3] = 0.5, -0.5
    assert atom_entropy_bits(atom).item() == pytest.approx(1.0)


def test_entropy_is_per_atom_and_metrics_average_it():
    atoms = torch.stack([one_hot_pixel(), torch.ones(3, H, W)])
    assert atom_entropy_bits(atoms).tolist() == pytest.approx([0.0, math.log2(H * W)])
    assert atom_metrics(atoms)["entropy_bits"] == pytest.approx(math.log2(H * W) / 2)


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


def test_evaluate_averages_over_alive_atoms_only(tmp_path):
    model, data = toy_model_and_data()
    task = AtomEntropy()
    config = {"artifact_dir": tmp_path / "artifacts", "model_name": "toy", "seed": 3}
    metrics = task.evaluate(TrainedModel(model=model), data, config)
    assert metrics["alive_atoms"] == 3
    assert metrics["entropy_bits"] == pytest.approx((0 + math.log2(H * W) + 1) / 3)
    assert metrics["entropy_norm"] == pytest.approx((0 + 1 + 1 / math.log2(H * W)) / 3)
    assert metrics["color_purity"] == pytest.approx(1.0)
    saved = torch.load(tmp_path / "artifacts" / "atom_entropy" / "tiny" / "toy-seed3.pt")
    assert sorted(saved["latents"].tolist()) == [0, 1, 3]  # the dead latent is not shown

    results = pd.DataFrame([dict(task="atom_entropy", dataset="tiny", variant="toy", seed=3, metric=m,
                                 value=v, status="ok") for m, v in metrics.items()])
    [(title, path)] = task.plots(results, tmp_path)
    assert path.exists() and path.suffix == ".png" and "tiny" in title


def test_registered_under_its_name():
    assert TASKS.get("atom_entropy") is AtomEntropy


def test_non_image_data_is_skipped():
    vectors = Dataset(name="vec", train=torch.rand(4, 10), test=torch.rand(4, 10), config={})
    assert "needs images" in AtomEntropy().skip_reason(VARIANTS.get("relu"), vectors)


# ----- every registered variant -----
@pytest.mark.parametrize("variant", VARIANTS.names())
def test_every_image_variant_gets_finite_metrics(variant):
    data = image_dataset()
    task = AtomEntropy()
    if task.skip_reason(VARIANTS.get(variant), data):
        pytest.skip(task.skip_reason(VARIANTS.get(variant), data))
    metrics = task.evaluate(trained_variant(variant, data, epochs=1), data, {})
    assert set(metrics) == {"entropy_bits", "entropy_norm", "color_purity", "alive_atoms"}
    assert all(math.isfinite(v) for v in metrics.values())
    assert 0 <= metrics["entropy_norm"] <= 1 + 1e-9 and 0.5 <= metrics["color_purity"] <= 1 + 1e-9
