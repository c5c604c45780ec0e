import math

import pytest
import torch

from benchmark.datasets import build_dataset
from benchmark.datasets.shapes import COLOURS, FACTOR_SIZES, SHAPES, SIZES, render

N_TUPLES = math.prod(FACTOR_SIZES)


def build(**params):
    return build_dataset("shapes", {"size": 12, "renderings": 2, **params})


def as_set(tuples: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in row) for row in tuples}


@pytest.mark.parametrize("split", ["tuple", "pair"])
def test_no_heldout_tuple_in_training_and_every_value_in_training(split):
    data = build(split=split)
    heldout = as_set(data.truth["heldout_tuples"])
    assert heldout and not heldout & as_set(data.train_concepts)
    assert as_set(data.test_concepts) == heldout
    assert as_set(data.train_concepts) == as_set(data.truth["train_tuples"])
    assert len(heldout) + len(as_set(data.train_concepts)) == N_TUPLES
    for factor, n_values in enumerate(FACTOR_SIZES):
        assert sorted(data.train_concepts[:, factor].unique().tolist()) == list(range(n_values))


def test_tuple_split_holds_out_the_requested_fraction():
    data = build(split="tuple", heldout_fraction=0.2)
    assert len(data.test) == round(0.2 * N_TUPLES)


def test_pair_split_holds_out_exactly_the_tuples_of_the_chosen_pairs():
    data = build(split="pair", n_pairs=3)
    pairs = {(s, c) for s, c, _, _ in as_set(data.truth["heldout_tuples"])}
    assert len(pairs) == 3
    assert len({s for s, _ in pairs}) == 3 and len({c for _, c in pairs}) == 3  # distinct values
    assert len(data.test) == 3 * FACTOR_SIZES[2] * FACTOR_SIZES[3]  # every tuple of each pair
    assert not any((s, c) in pairs for s, c, _, _ in as_set(data.train_concepts))


@pytest.mark.parametrize("split", ["tuple", "pair"])
def test_splits_are_deterministic_for_a_seed_and_differ_across_seeds(split):
    first, again, other = build(split=split, seed=3), build(split=split, seed=3), build(split=split, seed=4)
    assert torch.equal(first.truth["heldout_tuples"], again.truth["heldout_tuples"])
    assert torch.equal(first.train, again.train) and torch.equal(first.test, again.test)
    assert as_set(first.truth["heldout_tuples"]) != as_set(other.truth["heldout_tuples"])


def test_images_are_float32_in_unit_range_with_labels_per_image():
    data = build(renderings=3)
    assert data.train.dtype == torch.float32 and data.train.shape[1:] == (3, 12, 12)
    assert data.train.min() >= 0 and data.train.max() <= 1
    assert data.train_concepts.shape == (len(data.train), 4) and data.train_concepts.dtype == torch.long
    assert len(data.train) == 3 * len(data.truth["train_tuples"])
    assert data.truth["factor_sizes"] == FACTOR_SIZES and data.capabilities() == {"image", "concepts"}


def renderings_of_the_first_tuple(data) -> torch.Tensor:
    """The training images of the first training image's tuple (training order is shuffled)."""
    return data.train[(data.train_concepts == data.train_concepts[0]).all(1)]


def test_training_renderings_are_jittered_and_test_renderings_canonical():
    jittered = renderings_of_the_first_tuple(build(renderings=2))
    assert len(jittered) == 2 and not torch.equal(jittered[0], jittered[1])  # same tuple, two renderings
    still = build(renderings=2, position_jitter=0.0, colour_jitter=0.0)
    assert torch.equal(*renderings_of_the_first_tuple(still))
    assert torch.equal(build(renderings=2).test, still.test)  # the test split carries no jitter


def canonical(shape: int, colour: int, position: int, size: int, pixels: int) -> torch.Tensor:
    concepts = torch.tensor([[shape, colour, position, size]])
    base = torch.tensor([list(COLOURS.values())[colour]])
    return render(concepts, pixels, torch.zeros(1, 2), base)[0]


def test_a_centred_square_has_its_exact_colour_inside_and_black_outside():
    image = canonical(SHAPES.index("square"), 0, position=4, size=1, pixels=18)  # centre (9, 9)
    assert torch.allclose(image[:, 9, 9], torch.tensor(COLOURS["red"]))
    assert image[:, 0, 0].abs().max() == 0


@pytest.mark.parametrize("shape, area_per_r2", [
    ("square", 4.0), ("circle", math.pi), ("triangle", 2.0), ("cross", 20 / 9),
])
def test_drawn_area_matches_the_shapes_analytic_area(shape, area_per_r2):
    pixels = 48
    radius = SIZES[1] * pixels / 3 / 2
    image = canonical(SHAPES.index(shape), 0, position=4, size=1, pixels=pixels)
    drawn_area = float(image[0].sum() / COLOURS["red"][0])  # red channel: colour × coverage
    assert drawn_area == pytest.approx(area_per_r2 * radius**2, rel=0.03)


def test_bad_split_names_the_choices():
    with pytest.raises(ValueError, match="tuple' or 'pair"):
        build(split="random")
