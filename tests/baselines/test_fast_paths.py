"""The speed-ups of the shared SAE code give the numbers of the plain formulas:
the sparse decode of row-sparse codes (baselines/_sparse.py), the centred linear map's backward
(baselines/_linear.py) and MP's Gram-matrix encoder (baselines/mp.py)."""
import pytest
import torch

from baselines import _linear, _sparse
from baselines._linear import centered_linear
from baselines._sparse import decode_rows, row_sparse_codes, row_support
from benchmark.flops import flops_per_sample
from benchmark.registry import VARIANTS


def sparse_batch(batch=6, n_latents=64, k=3, dim=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    indices = torch.rand(batch, n_latents, generator=g).topk(k, dim=1).indices
    values = torch.rand(batch, k, generator=g, requires_grad=True)
    weight = torch.randn(n_latents, dim, generator=g, requires_grad=True)
    return indices, values, weight


def test_row_sparse_codes_are_the_dense_matrix_and_decode_like_it():
    indices, values, weight = sparse_batch()
    codes = row_sparse_codes(indices, values, 64)
    dense = torch.zeros(6, 64).scatter(1, indices, values.detach())
    assert torch.equal(codes, dense)
    assert row_support(codes) is not None
    assert torch.allclose(decode_rows(codes, weight), dense @ weight, atol=1e-6)


def test_sparse_decode_gradients_equal_the_dense_products():
    indices, values, weight = sparse_batch()
    target = torch.randn(6, 10)
    sparse = (decode_rows(row_sparse_codes(indices, values, 64), weight) - target).pow(2).sum()
    g_sparse = torch.autograd.grad(sparse, (values, weight))
    dense_codes = torch.zeros(6, 64).scatter(1, indices, values)
    dense = (dense_codes @ weight - target).pow(2).sum()
    g_dense = torch.autograd.grad(dense, (values, weight))
    for a, b in zip(g_sparse, g_dense):
        assert torch.allclose(a, b, atol=1e-5)


def test_a_repeated_index_accumulates_as_in_the_dense_codes():
    indices = torch.tensor([[2, 2, 5]])
    values = torch.tensor([[1.0, 0.5, 2.0]])
    weight = torch.randn(64, 4)
    codes = row_sparse_codes(indices, values, 64)
    assert codes[0, 2] == 1.5
    assert torch.allclose(decode_rows(codes, weight), 1.5 * weight[2] + 2.0 * weight[5])


def test_edited_codes_lose_their_support_and_decode_densely():
    indices, values, weight = sparse_batch()
    codes = row_sparse_codes(indices, values.detach(), 64)
    shifted = codes * 2  # out of place: a new tensor, no support
    assert row_support(shifted) is None
    assert torch.allclose(decode_rows(shifted, weight), shifted @ weight, atol=1e-5)
    free = next(j for j in range(64) if j not in indices[0])
    codes[0, free] += 1.0  # in place: the stale support must not be used
    assert row_support(codes) is None
    assert torch.allclose(decode_rows(codes, weight)[0], codes[0] @ weight, atol=1e-5)


def test_dense_enough_codes_take_the_dense_product(monkeypatch):
    calls = []
    monkeypatch.setattr(_sparse.F, "embedding_bag", lambda *a, **kw: calls.append(1))
    indices, values, weight = sparse_batch(n_latents=64, k=8)  # 64 < 16·8: not sparse enough
    decode_rows(row_sparse_codes(indices, values, 64), weight)
    assert not calls
    indices, values, weight = sparse_batch(n_latents=64, k=3)  # 64 >= 16·3
    decode_rows(row_sparse_codes(indices, values, 64), weight)
    assert calls


def test_fvcore_still_counts_the_dense_decode_of_topk():
    topk = VARIANTS.get("topk")((3, 8, 8), 64, k=2)
    assert flops_per_sample(topk, torch.rand(4, 3, 8, 8)) == 2 * 192 * 64


@pytest.mark.parametrize("variant, hparams", [("topk", {"k": 2}), ("mp", {"k": 3}), ("relu", {})])
def test_training_gradients_match_the_plain_formulas(variant, hparams, monkeypatch):
    """One loss, its gradients through the fast paths and through the plain ones."""
    def grads():
        torch.manual_seed(0)
        model = VARIANTS.get(variant)((3, 4, 4), 64, **hparams)
        x = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(1))
        model.init_from_data(x)
        with torch.no_grad():
            model.b_dec.add_(0.1)  # b_dec gets a gradient through the encoder too
        codes = model.encode(x)
        loss, _ = model.loss(x, model.decode(codes), codes)
        return torch.autograd.grad(loss, [p for p in model.parameters()])

    fast = grads()
    monkeypatch.setattr(_sparse, "SPARSE_DECODE_MIN_RATIO", 10**9)  # dense decode
    monkeypatch.setattr(_linear._CenteredLinear, "apply", plain_centered_linear)
    plain = grads()
    for a, b in zip(fast, plain):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def plain_centered_linear(x, center, weight, bias):
    out = (x - center) @ weight
    return out if bias is None else out + bias


def test_centered_linear_matches_autograd_and_passes_gradcheck():
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(1)]
    args += [torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True),
             torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True),
             torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(centered_linear, args)
    x, center, weight, bias = args
    assert torch.equal(centered_linear(x, center, weight, bias), (x - center) @ weight + bias)


def plain_matching_pursuit(x, atoms, k):
    """The textbook loop: recompute <r, d> for every atom at every step, subtract coef·atom."""
    residual, codes = x.clone(), torch.zeros(x.shape[0], atoms.shape[0], dtype=x.dtype)
    rows = torch.arange(x.shape[0])
    for _ in range(k):
        correlations = residual @ atoms.t()
        selected = correlations.argmax(1)
        coef = correlations[rows, selected].clamp_min(0)
        codes[rows, selected] += coef
        residual = residual - coef[:, None] * atoms[selected]
    return codes


def test_mp_gram_encoder_gives_the_plain_loops_codes():
    torch.manual_seed(0)
    model = VARIANTS.get("mp")((3, 4, 4), 40, k=6).double()
    x = torch.rand(32, 3, 4, 4, dtype=torch.float64)
    model.init_from_data(x)
    with torch.no_grad():
        fast = model.encode(x)
    plain = plain_matching_pursuit((x.flatten(1) - model.b_dec).detach(), model.dictionary().detach(), 6)
    assert torch.allclose(fast, plain, atol=1e-10)
    assert not torch.allclose(fast, plain_matching_pursuit(x.flatten(1), model.dictionary().detach(), 6))


def test_mp_encoder_is_the_same_with_and_without_a_graph():
    torch.manual_seed(0)
    model = VARIANTS.get("mp")((3, 4, 4), 40, k=6)
    x = torch.rand(32, 3, 4, 4)
    model.init_from_data(x)
    with torch.no_grad():
        in_place = model.encode(x)
    assert torch.equal(model.encode(x).detach(), in_place)


def test_pursuit_backward_passes_gradcheck():
    from baselines._pursuit import gram_matrix, pursuit_steps

    g = torch.Generator().manual_seed(0)
    atoms = torch.nn.functional.normalize(torch.randn(12, 5, generator=g, dtype=torch.float64), dim=1)
    atoms.requires_grad_()
    x = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: gram_matrix(a), (atoms,))
    assert torch.autograd.gradcheck(lambda x_, a: pursuit_steps(x_ @ a.t(), gram_matrix(a), 4)[1], (x, atoms))


def test_a_stacked_pursuit_steps_each_model_only_to_its_own_k():
    """Models of a stack in any order of k: each one's atoms, coefficients and gradients are
    exactly those of its own pursuit; its steps past its k are atom 0, coefficient 0."""
    from baselines._pursuit import gram_matrix, pursuit_steps

    g = torch.Generator().manual_seed(0)
    ks = [3, 1, 5, 3]
    atoms = torch.nn.functional.normalize(torch.randn(4, 12, 5, generator=g), dim=-1)
    x = torch.randn(4, 6, 5, generator=g)
    weights = torch.randn(4, 6, 5, generator=g)  # a loss that weights every step's coefficient
    correlations = (x @ atoms.mT).requires_grad_()
    gram = gram_matrix(atoms).requires_grad_()
    chosen, coefs = pursuit_steps(correlations, gram, torch.tensor(ks))
    (coefs * weights).sum().backward()
    for m, k in enumerate(ks):
        own_correlations = correlations[m].detach().clone().requires_grad_()
        own_gram = gram[m].detach().clone().requires_grad_()
        own_chosen, own_coefs = pursuit_steps(own_correlations, own_gram, k)
        (own_coefs * weights[m, :, :k]).sum().backward()
        assert torch.equal(chosen[m, :, :k], own_chosen) and torch.equal(coefs[m, :, :k].detach(), own_coefs.detach())
        assert not chosen[m, :, k:].any() and not coefs[m, :, k:].any()
        assert torch.equal(correlations.grad[m], own_correlations.grad) and torch.equal(gram.grad[m], own_gram.grad)
    assert not torch.equal(gram.grad[0], gram.grad[3])  # the same k, other data: a swapped model would show


@pytest.mark.parametrize("variant, hparams", [("topk", {"k": 2, "dead_steps": 1}), ("mp", {"k": 3})])
def test_fast_paths_keep_training_deterministic(variant, hparams):
    """Two runs with the same seed give bit-identical weights (SPEC section 4), through the
    sparse decode, its scatter/gather backward, the pursuit backward and AuxK's sparse decode."""
    from benchmark.data import Dataset
    from benchmark.training.loop import TrainConfig, train_model

    data = torch.rand(300, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    dataset = Dataset("toy", data, data[:10], {})

    def weights():
        torch.manual_seed(0)
        model = VARIANTS.get(variant)((3, 4, 4), 64, **hparams)
        train_model(model, dataset, TrainConfig(2, 64, 1e-2), seed=0)
        return [p.detach().clone() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(weights(), weights()))
