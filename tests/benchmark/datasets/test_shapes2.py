import pytest
import torch

from benchmark.datasets import build_dataset
from benchmark.datasets.shapes import COLOURS, SHAPES
from benchmark.datasets.shapes2 import FACTOR_SIZES, N_OBJECTS, canonical, objects, render_objects
from benchmark.errors import UserError

SLOT = 8  # small and fast; the default is 12


def build(**params):
    return build_dataset("shapes2", {"slot": SLOT, "renderings": 2, **params})


def as_set(tuples: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in row) for row in tuples}


@pytest.fixture(scope="module")
def data():
    return build()


def test_heldout_pairs_never_trained_and_every_object_trained_in_each_slot(data):
    heldout, trained = as_set(data.test_concepts), as_set(data.train_concepts)
    assert heldout == as_set(data.truth["heldout_tuples"]) and not heldout & trained
    assert len(heldout) + len(trained) == N_OBJECTS**2
    assert len(heldout) == round(0.25 * N_OBJECTS**2)
    for slot in range(2):
        assert sorted(data.train_concepts[:, slot].unique().tolist()) == list(range(N_OBJECTS))


def test_an_image_is_the_sum_of_its_two_objects_in_disjoint_halves(data):
    pairs = data.truth["heldout_tuples"][:5]
    images = canonical(pairs, SLOT)
    left_alone = canonical(torch.stack([pairs[:, 0], pairs[:, 0]], 1), SLOT)[..., :SLOT]
    right_alone = canonical(torch.stack([pairs[:, 1], pairs[:, 1]], 1), SLOT)[..., :SLOT]
    assert torch.equal(images[..., :SLOT], left_alone) and torch.equal(images[..., SLOT:], right_alone)
    assert torch.equal(images, data.test[:5])  # the test split is the canonical rendering
    # swapping the objects swaps the halves: the two slots are the same renderer
    swapped = canonical(pairs.flip(1), SLOT)
    assert torch.equal(swapped[..., :SLOT], images[..., SLOT:])


def test_objects_are_the_shapes_colours_and_shapes():
    assert objects().shape == (len(SHAPES) * len(COLOURS), 2) and len(set(map(tuple, objects().tolist()))) == N_OBJECTS
    square_red = int(((objects()[:, 0] == SHAPES.index("square")) & (objects()[:, 1] == 0)).nonzero())
    image = render_objects(torch.tensor([square_red]), 12, torch.zeros(1, 2), torch.tensor([COLOURS["red"]]))[0]
    assert torch.allclose(image[:, 6, 6], torch.tensor(COLOURS["red"]))  # the centre is inside
    assert image[:, 0, 0].abs().max() == 0  # the corner is background


def test_seen_test_renderings_are_canonical_renderings_of_the_training_pairs(data):
    seen = data.truth["seen_test_concepts"]
    assert as_set(seen) == as_set(data.train_concepts) and len(seen) == len(as_set(seen))
    assert torch.equal(data.truth["seen_test"], canonical(seen, SLOT))
    # training renderings are jittered, so a seen pair's test rendering is not a training image
    first = data.train[(data.train_concepts == seen[0]).all(1)]
    assert not any(torch.equal(image, data.truth["seen_test"][0]) for image in first)


def test_deterministic_for_a_seed_and_different_across_seeds(data):
    again, other = build(), build(seed=1)
    assert torch.equal(data.train, again.train) and torch.equal(data.test, again.test)
    assert as_set(data.test_concepts) != as_set(other.test_concepts)
    assert data.config["seed"] == 0 and other.config["seed"] == 1


def test_format_and_vocabulary(data):
    assert data.train.dtype == torch.float32 and data.train.shape[1:] == (3, SLOT, 2 * SLOT)
    assert 0 <= data.train.min() and data.train.max() <= 1
    assert len(data.train) == 2 * len(data.truth["train_tuples"])
    assert data.concept_sizes() == FACTOR_SIZES and data.capabilities() == {"image", "concepts"}


def test_without_jitter_the_training_renderings_are_canonical():
    still = build(position_jitter=0.0, colour_jitter=0.0)
    assert torch.equal(still.train, canonical(still.train_concepts, SLOT))  # each its own pair's


def test_objects_that_could_leave_their_slot_are_refused():
    with pytest.raises(UserError, match="leave"):
        build(position_jitter=2.0)
