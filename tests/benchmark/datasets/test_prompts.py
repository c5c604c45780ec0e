"""prompts: the shapes factors and splits as text prompts, embedded by MiniLM. Embedding every
prompt for real takes ~20 s, so these tests swap in embeddings with a known structure (the real
embedding and its cache are tested in tests/benchmark/test_minilm.py)."""
import pytest
import torch

from benchmark import minilm as M
from benchmark.datasets import build_dataset
from benchmark.datasets import prompts as P
from benchmark.datasets.shapes import FACTOR_SIZES, all_tuples
from benchmark.registry import VARIANTS
from tasks.composition import Composition

N_TUPLES = len(all_tuples())


def fake_embeddings(additive: bool, template_weight: float = 1.0):
    """Embedding of tuple t, template j: Σ_f V_f[t_f] + w·W_j (+ a per-tuple term if not additive)."""
    g = torch.Generator().manual_seed(0)
    values = [torch.randn(n, 24, generator=g) for n in FACTOR_SIZES]
    templates = template_weight * torch.randn(len(P.TEMPLATES), 24, generator=g)
    interaction = torch.randn(N_TUPLES, 24, generator=g)

    def embed(texts, model_dir=None, cache_dir=None):
        assert texts == P.all_prompts()
        per_tuple = sum(values[f][all_tuples()[:, f]] for f in range(len(FACTOR_SIZES)))
        if not additive:
            per_tuple = per_tuple + 3 * interaction
        return (per_tuple[:, None, :] + templates[None]).flatten(0, 1)
    return embed


@pytest.fixture
def additive(monkeypatch):
    monkeypatch.setattr(M, "cached_sentence_embeddings", fake_embeddings(additive=True))


def as_set(tuples):
    return {tuple(int(v) for v in row) for row in tuples}


@pytest.mark.parametrize("split", ["tuple", "pair"])
def test_splits_follow_the_shapes_conventions(additive, split):
    data = build_dataset("prompts", {"split": split, "renderings": 3})
    heldout = as_set(data.truth["heldout_tuples"])
    assert heldout and not heldout & as_set(data.train_concepts)
    assert as_set(data.test_concepts) == heldout and len(data.test) == len(heldout)
    assert len(heldout) + len(as_set(data.train_concepts)) == N_TUPLES
    assert len(data.train) == 3 * (N_TUPLES - len(heldout))
    assert data.concept_sizes() == FACTOR_SIZES
    for factor, n_values in enumerate(FACTOR_SIZES):
        assert sorted(data.train_concepts[:, factor].unique().tolist()) == list(range(n_values))
    assert float(data.train.pow(2).mean()) == pytest.approx(1.0, rel=1e-5)


def test_each_row_is_the_prompt_of_its_concepts(additive):
    data = build_dataset("prompts", {"renderings": 7})
    for concepts, text in zip(data.train_concepts[::37], data.truth["train_prompts"][::37]):
        words = [P.VALUE_NAMES[f][int(v)] for f, v in enumerate(concepts)]
        assert all(word in text for word in words), (words, text)
    # every non-canonical template once per training tuple; the test rows use the canonical one
    first_tuple = data.truth["train_prompts"][:7]
    assert sorted(first_tuple) == sorted(P.prompt(data.truth["train_tuples"][0], j) for j in range(1, 8))
    assert data.truth["test_prompts"][0] == P.prompt(data.truth["heldout_tuples"][0], 0)
    assert P.prompt([2, 0, 0, 0], 0) == "a small red triangle at the top left"


def test_seen_test_prompts_are_the_canonical_prompts_of_training_tuples(additive):
    """seen_r2's samples: tuples trained on, in a paraphrase never trained on."""
    data = build_dataset("prompts", {"renderings": 3})
    assert torch.equal(data.truth["seen_test_concepts"], data.truth["train_tuples"])
    assert len(data.truth["seen_test"]) == len(data.truth["train_tuples"])
    canonical = {P.prompt(t, 0) for t in data.truth["train_tuples"]}
    assert not canonical & set(data.truth["train_prompts"])
    with pytest.raises(ValueError, match="renderings"):
        build_dataset("prompts", {"renderings": 8})


def test_the_seed_changes_the_split_and_the_paraphrases(additive):
    a, b = build_dataset("prompts", {"renderings": 2, "seed": 0}), build_dataset("prompts", {"renderings": 2, "seed": 1})
    assert as_set(a.test_concepts) != as_set(b.test_concepts)
    again = build_dataset("prompts", {"renderings": 2, "seed": 0})
    assert torch.equal(a.train, again.train) and a.truth["train_prompts"] == again.truth["train_prompts"]
    assert "cache_dir" not in a.config and "model_dir" not in a.config


@pytest.mark.parametrize("additive_data, exact", [(True, True), (False, False)])
def test_composition_is_exact_on_additive_embeddings_only(monkeypatch, additive_data, exact):
    """Embeddings additive in the concepts (one template): ridge from the concept mask recovers
    held-out tuples exactly; a per-tuple term no concept explains cannot be composed."""
    monkeypatch.setattr(M, "cached_sentence_embeddings", fake_embeddings(additive_data, template_weight=0.0))
    data = build_dataset("prompts", {"renderings": 2})
    r2 = Composition().reference_rows(data, {"ridge_alpha": 1e-9}, seed=0)["ridge-mask"]["heldout_r2"]
    assert (r2 == pytest.approx(1.0, abs=1e-6)) if exact else r2 < 0.5


def test_the_supervised_variant_configures_on_it(additive):
    data = build_dataset("prompts", {"renderings": 1})
    n_latents, hparams = VARIANTS.get("supervised").configure(data, 0, {"block_dim": 4})
    assert n_latents == 4 * sum(FACTOR_SIZES) and hparams["factor_sizes"] == list(FACTOR_SIZES)
