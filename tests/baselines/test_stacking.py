"""Stacked training (benchmark/training/stacking.py): a stack of M models of one variant is those M
models, each with its own hyperparameters, weights and batches, trained side by side.

Checked on every registered variant with stackable hyperparameters: one step's per-model losses
and gradients, and 25 steps of fused Adam (weights, buffers and losses). Then the shared pieces
and `benchmark/training/stacking.py` itself: the stacked sparse decode, the round trip of differently
sized buffers through `stack` / `unstack`, and the stacks that must be refused.
"""
import copy

import pytest
import torch

import baselines  # noqa: F401  (registers the variants)
from benchmark.registry import VARIANTS
from benchmark.training.stacking import stack, unstack

INPUT_SHAPE = (2, 3, 4)  # d = 24, several axes so that flattening to features is exercised
N_LATENTS = 64
BATCH = 16
SEEDS = (0, 1, 2)
# Three models per stack, each with its own value of every stackable hyperparameter. With k <=
# N_LATENTS / 16, TopK's and MP's codes are decoded by the sparse gather (baselines/_sparse.py).
SWEEP = {"k": (1, 2, 4), "l1_coeff": (0.1, 0.3, 1.0), "l0_coeff": (0.1, 0.3, 1.0)}
# Fixed hyperparameters that make the small runs exercise every branch: AuxK on latents dead
# after a few steps, JumpReLU's threshold gradient in a wide window.
FIXED = {"topk": {"aux_k": 8, "dead_steps": 3}, "batchtopk": {"aux_k": 8, "dead_steps": 3},
         "matryoshka": {"aux_k": 8, "dead_steps": 3}, "jumprelu": {"bandwidth": 0.2}}

STACKABLE = [name for name in VARIANTS.names() if VARIANTS.get(name).stackable_hparams]


def test_the_linear_variants_are_stackable():
    assert {"relu", "dense", "topk", "batchtopk", "matryoshka", "jumprelu", "mp"} <= set(STACKABLE)


def sweep(name: str) -> list[dict]:
    """The M models' constructor hyperparameters."""
    cls = VARIANTS.get(name)
    missing = cls.stackable_hparams - SWEEP.keys()
    assert not missing, f"add values of {sorted(missing)} to SWEEP"
    return [{**FIXED.get(name, {}), **{h: SWEEP[h][m] for h in cls.stackable_hparams}}
            for m in range(len(SEEDS))]


def data(seed: int, n: int) -> torch.Tensor:
    return torch.rand(n, *INPUT_SHAPE, generator=torch.Generator().manual_seed(100 + seed))


def build(name: str, hparams: dict, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = VARIANTS.get(name)(INPUT_SHAPE, N_LATENTS, **hparams)
    model.init_from_data(data(seed, 64))
    with torch.no_grad():  # b_dec off the data mean, so that its gradient through the encoder counts
        model.b_dec.add_(0.05 * torch.randn_like(model.b_dec))
    return model


def models_of(name: str) -> tuple[list, list[dict]]:
    hparams = sweep(name)
    models = [build(name, h, seed) for h, seed in zip(hparams, SEEDS)]
    if hasattr(models[0], "steps_since_fired"):
        # Different dead sets per model: none (no AuxK loss), fewer than aux_k, more than aux_k.
        for model, n_dead in zip(models, (0, 5, 20)):
            model.steps_since_fired[:n_dead] = model.dead_steps
    return models, hparams


def loss_and_grads(model, x):
    model.train()
    codes = model.encode(x)
    loss, logs = model.loss(x, model.decode(codes), codes)
    model.zero_grad()
    loss.sum().backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, logs


def own(stacked: torch.Tensor, row: int, like: torch.Tensor) -> torch.Tensor:
    """Model `row`'s slice of a stacked tensor, cut to its own shape."""
    return stacked[(row, *(slice(0, s) for s in like.shape))]


def assert_same_state(stacked, models, rtol, atol):
    state = stacked.state_dict()
    for m, model in enumerate(models):
        for key, value in model.state_dict().items():
            torch.testing.assert_close(own(state[key], m, value), value, rtol=rtol, atol=atol,
                                       msg=lambda msg: f"model {m}, {key}: {msg}")


@pytest.mark.parametrize("name", STACKABLE)
def test_one_step_gives_each_models_own_losses_and_gradients(name):
    models, hparams = models_of(name)
    stacked = stack(models, hparams)
    assert stacked.n_models == len(models)
    x = torch.stack([data(seed, BATCH) for seed in SEEDS])
    losses, grads, logs = loss_and_grads(stacked, x)
    assert losses.shape == (len(models),)
    if "aux" in logs:  # AuxK ran, and only for the models with dead latents
        assert logs["aux"][0] == 0 and (logs["aux"][1:] > 0).all()
    for m, model in enumerate(models):
        loss, own_grads, _ = loss_and_grads(model, x[m])
        torch.testing.assert_close(losses[m], loss, rtol=1e-5, atol=1e-6)
        for key, grad in own_grads.items():
            torch.testing.assert_close(own(grads[key], m, grad), grad, rtol=1e-5, atol=1e-6,
                                       msg=lambda msg: f"model {m}, grad of {key}: {msg}")
    assert_same_state(stacked, models, rtol=0, atol=0)  # buffers updated by encode alike


def adam(model):
    return torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)


def train(model, batches, steps: int) -> list[torch.Tensor]:
    optimiser, losses = adam(model), []
    model.train()
    for step in range(steps):
        x = batches(step)
        codes = model.encode(x)
        loss, _ = model.loss(x, model.decode(codes), codes)
        optimiser.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimiser.step()
        model.after_step()
        losses.append(loss.detach())
    return losses


@pytest.mark.parametrize("name", STACKABLE)
def test_training_a_stack_trains_each_model_as_alone(name):
    # In float64: in float32, Adam's first step turns the rounding noise of a gradient far below
    # its eps (a latent coded just above zero) into a step of up to lr·|g|/eps, so a batched
    # product that rounds unlike the single one (cuBLAS's does) drives two exact-maths-equal
    # runs apart. What this test checks is the maths; one step in float32 is checked above.
    steps, n = 25, 64
    models, hparams = models_of(name)
    models = [model.double() for model in models]
    stacked = stack(models, hparams)
    pools = [data(seed, n).double() for seed in SEEDS]
    orders = [torch.randint(n, (steps, BATCH), generator=torch.Generator().manual_seed(seed))
              for seed in SEEDS]  # each model its own batches

    stacked_losses = train(stacked, lambda t: torch.stack([p[o[t]] for p, o in zip(pools, orders)]), steps)
    for m, model in enumerate(models):
        losses = train(model, lambda t: pools[m][orders[m][t]], steps)
        torch.testing.assert_close(torch.stack(stacked_losses)[:, m], torch.stack(losses),
                                   rtol=1e-4, atol=1e-5, msg=lambda msg: f"model {m}: {msg}")
    assert_same_state(stacked, models, rtol=1e-4, atol=1e-5)
    assert all(torch.isfinite(loss).all() for loss in stacked_losses)


def test_stacked_sparse_decode_is_each_models_own(monkeypatch):
    from baselines import _sparse
    from baselines._sparse import decode_rows, row_sparse_codes

    calls = []
    embedding_bag = _sparse.F.embedding_bag
    monkeypatch.setattr(_sparse.F, "embedding_bag", lambda *a, **kw: calls.append(1) or embedding_bag(*a, **kw))
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 64, 5, generator=g, requires_grad=True)
    values = torch.rand(3, 4, 2, generator=g, requires_grad=True)
    indices = torch.randint(64, (3, 4, 2), generator=g)
    stacked = decode_rows(row_sparse_codes(indices, values, 64), weight)
    assert calls, "the stacked codes should take the sparse gather"
    stacked_grads = torch.autograd.grad(stacked.pow(2).sum(), (values, weight))
    for m in range(3):
        alone = decode_rows(row_sparse_codes(indices[m], values[m], 64), weight[m])
        torch.testing.assert_close(stacked[m], alone)
        grads = torch.autograd.grad(alone.pow(2).sum(), (values, weight))
        torch.testing.assert_close(stacked_grads[0][m], grads[0][m])
        torch.testing.assert_close(stacked_grads[1][m], grads[1][m])


def test_unstack_gives_back_differently_sized_buffers_exactly():
    hparams = [{"k": 2}, {"k": 5}]  # thresholds of 8 and 20
    models = [build("batchtopk", h, seed) for h, seed in zip(hparams, SEEDS)]
    for model, seed in zip(models, SEEDS):  # calibrated thresholds, counters off zero
        train(model, lambda t: data(seed, BATCH), steps=2)
    assert models[0].thresholds.shape != models[1].thresholds.shape
    stacked = stack(models, hparams)
    copies = [build("batchtopk", h, seed=7) for h in hparams]
    unstack(stacked, copies)
    for model, twin in zip(models, copies):
        for key, value in model.state_dict().items():
            assert torch.equal(twin.state_dict()[key], value), key


def test_thresholds_of_a_calibrated_and_a_fresh_model_update_each_as_alone():
    hparams = [{"k": 2}, {"k": 3}]
    models = [build("batchtopk", h, seed) for h, seed in zip(hparams, SEEDS)]
    train(models[0], lambda t: data(0, BATCH), steps=1)  # calibrated: averages; the other seeds
    stacked = stack(models, hparams).train()
    x = torch.stack([data(seed + 10, BATCH) for seed in SEEDS[:2]])
    stacked.encode(x)
    for m, model in enumerate(models):
        model.train().encode(x[m])
    assert_same_state(stacked, models, rtol=0, atol=0)


def test_models_with_different_fixed_hyperparameters_do_not_stack():
    hparams = [{"k": 2, "aux_k": 8}, {"k": 3, "aux_k": 16}]
    models = [build("topk", h, seed) for h, seed in zip(hparams, SEEDS)]
    with pytest.raises(ValueError):
        stack(models, hparams)


def test_a_default_hyperparameter_is_stacked_as_the_models_value():
    hparams = [{}, {"k": 5}]  # the first model keeps TopK's default k
    models = [build("topk", h, seed) for h, seed in zip(hparams, SEEDS)]
    stacked = stack(models, hparams)
    assert stacked.k.tolist() == [models[0].k, 5]


def test_a_stacked_model_is_copyable_after_training():
    models, hparams = models_of("topk")
    stacked = stack(models, hparams)
    train(stacked, lambda t: torch.stack([data(seed, BATCH) for seed in SEEDS]), steps=2)
    twin = copy.deepcopy(stacked)
    assert torch.equal(twin.W_dec, stacked.W_dec)
