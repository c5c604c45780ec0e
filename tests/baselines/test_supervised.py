import itertools

import pytest
import torch

from benchmark.data import Dataset
from benchmark.registry import VARIANTS
from benchmark.task import Task
from benchmark.training.loop import TrainConfig, train_model
from benchmark.variant import encode_batch

SupervisedSAE = VARIANTS.get("supervised")
SHAPE = (3, 4, 4)
SIZES = (3, 4, 2)


def additive_dataset(seed: int = 0) -> Dataset:
    """x = Σ_factor pattern[factor][value], with a seeded fifth of the tuples held out."""
    g = torch.Generator().manual_seed(seed)
    patterns = [torch.rand(n, *SHAPE, generator=g) / len(SIZES) for n in SIZES]
    tuples = torch.tensor(list(itertools.product(*(range(n) for n in SIZES))))
    order = torch.randperm(len(tuples), generator=g)
    heldout, train = tuples[order[: len(tuples) // 5]], tuples[order[len(tuples) // 5 :]]
    draw = lambda t: sum(patterns[f][t[:, f]] for f in range(len(SIZES)))  # noqa: E731
    return Dataset("additive", draw(train), draw(heldout), {"kind": "additive"}, train, heldout,
                   {"factor_sizes": SIZES})


def build(dataset: Dataset, block_dim: int = 3) -> SupervisedSAE:
    n_latents, hparams = SupervisedSAE.configure(dataset, 999, {"block_dim": block_dim})
    torch.manual_seed(0)
    return SupervisedSAE(dataset.input_shape, n_latents, **hparams)


def test_configure_sizes_the_code_by_the_concept_vocabulary():
    data = additive_dataset()
    n_latents, hparams = SupervisedSAE.configure(data, 999, {"block_dim": 3})
    assert n_latents == 3 * sum(SIZES) and hparams == {"block_dim": 3, "factor_sizes": list(SIZES)}
    unlabelled_vocabulary = Dataset("x", data.train, data.test, {}, data.train_concepts, data.test_concepts)
    assert SupervisedSAE.configure(unlabelled_vocabulary, 0, {})[0] == 10 * sum(SIZES)  # inferred, d = 10


def test_code_holds_each_concepts_block_and_zeros_elsewhere():
    data = additive_dataset()
    model = build(data)
    concepts = torch.tensor([[2, 0, 1]])
    blocks = encode_batch(model, data.train[:1], concepts).view(sum(SIZES), 3)
    active = [2, SIZES[0] + 0, SIZES[0] + SIZES[1] + 1]  # global value index of each concept
    for value in range(sum(SIZES)):
        expected = model.embeddings[value].relu() if value in active else torch.zeros(3)
        assert torch.equal(blocks[value], expected)


def test_the_code_ignores_the_image_and_needs_labels():
    data = additive_dataset()
    model = build(data)
    concepts = data.train_concepts[:5]
    assert torch.equal(model.encode(data.train[:5], concepts), model.encode(torch.zeros(5, *SHAPE), concepts))
    with pytest.raises(ValueError, match="concept"):
        encode_batch(model, data.train[:5])


def test_decoding_is_additive_over_concepts():
    """x̂ = b + Σ_i W_i relu(e_{v_i}): swapping one factor moves x̂ the same whatever the rest."""
    model = build(additive_dataset())
    decode = lambda *t: model.decode(model.encode(None, torch.tensor([t])))  # noqa: E731
    assert torch.allclose(decode(0, 1, 0) - decode(2, 1, 0), decode(0, 3, 1) - decode(2, 3, 1), atol=1e-6)


def test_a_mismatched_latent_count_is_refused():
    with pytest.raises(ValueError, match="block_dim"):
        SupervisedSAE(SHAPE, 25, factor_sizes=[2, 3], block_dim=10)


def test_skipped_on_data_without_concepts():
    data = additive_dataset()
    unlabelled = Dataset("plain", data.train, data.test, {})
    assert "concepts" in Task().skip_reason(SupervisedSAE, unlabelled)
    assert Task().skip_reason(SupervisedSAE, data) is None


def heldout_r2(model, data: Dataset, concepts: torch.Tensor) -> float:
    with torch.no_grad():
        x_hat = model.decode(encode_batch(model, data.test, concepts))
    residual = (data.test - x_hat).pow(2).sum()
    return float(1 - residual / (data.test - data.test.mean(0)).pow(2).sum())


def test_unseen_combinations_are_decoded_from_their_concepts_blocks():
    data = additive_dataset()
    model = build(data, block_dim=4)
    train_model(model, data, TrainConfig(epochs=40, batch_size=16, lr=0.01), seed=0)
    assert not set(map(tuple, data.test_concepts.tolist())) & set(map(tuple, data.train_concepts.tolist()))
    assert heldout_r2(model, data, data.test_concepts) > 0.99
    # Given the wrong concepts for the held-out images, the same model scores far lower.
    assert heldout_r2(model, data, data.test_concepts.roll(1, dims=0)) < 0.5
