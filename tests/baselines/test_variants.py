"""The variant contract, checked on every registered variant (SPEC section 2).

Each variant is built the way the harness builds it: smoke-preset hyperparameters (without
`match_params_of`, which only picks the width), `configure` on the dataset, then the
constructor, then `init_from_data`.
"""
import copy

import pytest
import torch

from benchmark.config import load_preset
from benchmark.data import Dataset
from benchmark.registry import VARIANTS
from benchmark.variant import encode_batch

INPUT_SHAPE = (3, 8, 8)
N_LATENTS = 64
FACTOR_SIZES = (2, 3, 2)
PRESET_DATASET = "whitened8"  # the smoke preset's hyperparameters for colour images


def tiny_dataset(n: int = 64) -> Dataset:
    generator = torch.Generator().manual_seed(0)
    images = lambda: torch.rand(n, *INPUT_SHAPE, generator=generator)  # noqa: E731
    concepts = lambda: torch.stack(  # noqa: E731
        [torch.randint(size, (n,), generator=generator) for size in FACTOR_SIZES], dim=1)
    return Dataset(name="tiny", train=images(), test=images(), config={"kind": "tiny"},
                   train_concepts=concepts(), test_concepts=concepts(),
                   truth={"factor_sizes": list(FACTOR_SIZES)})


SMOKE = load_preset("smoke")


def smoke_hparams(name: str) -> dict:
    # The first setting of the variant's sparsity sweep, with its other hyperparameters.
    hparams = next(iter(SMOKE.settings(name, PRESET_DATASET).values())) if name in SMOKE.variants else {}
    hparams.pop("match_params_of", None)
    return hparams


def build(name: str, dataset: Dataset, seed: int = 0):
    cls = VARIANTS.get(name)
    n_latents, hparams = cls.configure(dataset, N_LATENTS, smoke_hparams(name))
    torch.manual_seed(seed)
    model = cls(dataset.input_shape, n_latents, **hparams)
    model.init_from_data(dataset.train)
    return model


def train_steps(model, dataset, steps: int = 2, lr: float = 1e-3):
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        codes = encode_batch(model, dataset.train, dataset.train_concepts)
        loss, _ = model.loss(dataset.train, model.decode(codes), codes)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        model.after_step()
    model.eval()


ALL = VARIANTS.names()


def test_every_planned_variant_is_registered():
    planned = {"relu", "topk", "batchtopk", "jumprelu", "matryoshka", "mp", "tensor", "dense",
               "conv", "supervised"}
    assert planned <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_shapes_and_finite_scalar_loss(name):
    dataset = tiny_dataset()
    model = build(name, dataset).train()
    x = dataset.train[:16]
    codes = encode_batch(model, x, dataset.train_concepts[:16])
    x_hat = model.decode(codes)
    assert codes.shape == (16, model.n_latents)
    assert x_hat.shape == (16, *INPUT_SHAPE)
    loss, logs = model.loss(x, x_hat, codes)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in logs.values())


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter(name):
    dataset = tiny_dataset()
    model = build(name, dataset).train()
    x, concepts = dataset.train, dataset.train_concepts
    codes = encode_batch(model, x, concepts)
    loss, _ = model.loss(x, model.decode(codes), codes)
    loss.backward()
    for pname, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f"{name}.{pname} got no gradient"
            assert param.grad.abs().sum() > 0, f"{name}.{pname} got an all-zero gradient"


def atom_norm_error(model) -> float:
    return float((model.atoms().flatten(1).norm(dim=1) - 1).abs().max())


@pytest.mark.parametrize(
    "name", [n for n in ALL if getattr(VARIANTS.get(n), "unit_norm_atoms", False)])
def test_after_step_restores_unit_norm_atoms(name):
    dataset = tiny_dataset()
    model = build(name, dataset).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)  # a big step moves the norms
    codes = encode_batch(model, dataset.train, dataset.train_concepts)
    loss, _ = model.loss(dataset.train, model.decode(codes), codes)
    loss.backward()
    optimiser.step()
    assert atom_norm_error(model) > 1e-3, "the step should have broken the invariant"
    model.after_step()
    assert atom_norm_error(model) < 1e-5


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip(name):
    dataset = tiny_dataset()
    model = build(name, dataset, seed=0)
    train_steps(model, dataset)  # buffers (thresholds, dead-latent counters) leave their init
    fresh = build(name, dataset, seed=1)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    x, concepts = dataset.test, dataset.test_concepts
    with torch.no_grad():
        codes = encode_batch(model, x, concepts)
        assert torch.equal(encode_batch(fresh, x, concepts), codes)
        assert torch.equal(fresh.decode(codes), model.decode(codes))


@pytest.mark.parametrize("name", [n for n in ALL if VARIANTS.get(n).supports_inference_k()])
def test_set_inference_k_changes_sparsity(name):
    dataset = tiny_dataset()
    model = build(name, dataset)
    train_steps(model, dataset)
    k = model.k
    l0 = {}
    with torch.no_grad():
        for new_k in (max(1, k // 2), k):
            model.set_inference_k(new_k)
            assert model.k == new_k
            l0[new_k] = float((model.encode(dataset.test) != 0).sum(1).float().mean())
    assert l0[max(1, k // 2)] < l0[k]


@pytest.mark.parametrize("name", ALL)
def test_a_trained_model_can_be_copied(name):
    # Nothing from the last training step (cached pre-activations with their autograd graph)
    # may stay on the model: deepcopy refuses non-leaf tensors.
    dataset = tiny_dataset()
    model = build(name, dataset)
    train_steps(model, dataset)
    twin = copy.deepcopy(model)
    x, concepts = dataset.test, dataset.test_concepts
    with torch.no_grad():
        assert torch.equal(encode_batch(twin, x, concepts), encode_batch(model, x, concepts))
