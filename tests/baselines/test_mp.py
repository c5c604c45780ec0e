"""MP-SAE: its Gram-matrix pursuit against a plain matching-pursuit loop, and MP's guarantee."""
import pytest
import torch

from baselines._pursuit import first_argmax
from baselines.mp import MatchingPursuitSAE


def reference_pursuit(x, atoms, bias, k):
    """Plain matching pursuit, recomputing every correlation from the residual at each step:
    pick the largest inner product, add max(it, 0) to that atom's code, subtract coef·atom.
    Returns the codes and, per sample, how many steps added a non-zero coefficient."""
    residual = x - bias
    codes = torch.zeros(x.shape[0], atoms.shape[0], dtype=x.dtype)
    rows = torch.arange(x.shape[0])
    useful_steps = torch.zeros(x.shape[0], dtype=torch.long)
    for _ in range(k):
        correlations = residual @ atoms.t()
        best = correlations.argmax(1)
        coef = correlations[rows, best].relu()
        codes = codes.index_put((rows, best), coef, accumulate=True)
        residual = residual - coef[:, None] * atoms[best]
        useful_steps += coef > 0
    return codes, useful_steps


def random_case(seed):
    """A random unit-norm dictionary (often overcomplete, so atoms get picked twice), inputs,
    bias and step count, in float64 so that near-ties cannot flip an argmax."""
    gen = torch.Generator().manual_seed(seed)
    dim = int(torch.randint(2, 24, (1,), generator=gen))
    n_atoms = int(torch.randint(2, 40, (1,), generator=gen))
    k = int(torch.randint(1, 16, (1,), generator=gen))
    model = MatchingPursuitSAE((dim,), n_atoms, k=k).double()
    with torch.no_grad():
        atoms = torch.randn(n_atoms, dim, generator=gen, dtype=torch.float64)
        model.W_dec.copy_(atoms / atoms.norm(dim=1, keepdim=True))
        model.b_dec.copy_(torch.randn(dim, generator=gen, dtype=torch.float64))
    x = 3 * torch.randn(8, dim, generator=gen, dtype=torch.float64)
    return model, x


SEEDS = range(30)


def test_codes_equal_a_plain_pursuit_loop():
    repeats = 0
    for seed in SEEDS:
        model, x = random_case(seed)
        with torch.no_grad():
            codes = model.encode(x)
            expected, useful_steps = reference_pursuit(x, model.W_dec, model.b_dec, model.k)
        torch.testing.assert_close(codes, expected, rtol=1e-9, atol=1e-9, msg=f"seed {seed}")
        repeats += int(((expected != 0).sum(1) < useful_steps).sum())
    assert repeats > 0, "no case picked an atom twice: the accumulation went untested"


def test_residual_norm_never_grows():
    for seed in SEEDS:
        model, x = random_case(seed)
        previous = (x - model.b_dec).norm(dim=1)
        with torch.no_grad():
            for k in range(1, model.k + 4):  # a few steps past the trained k too
                model.set_inference_k(k)
                residual = (x - model.decode(model.encode(x))).norm(dim=1)
                assert (residual <= previous + 1e-9).all(), f"seed {seed}, step {k}"
                previous = residual


def test_orthonormal_dictionary_keeps_the_k_largest_positive_correlations():
    # With D = I the correlations never interact: MP's codes are the k largest positive entries
    # of x - b, and a sample with no positive entry gets no code at all.
    model = MatchingPursuitSAE((5,), 5, k=2)
    with torch.no_grad():
        model.W_dec.copy_(torch.eye(5))
    x = torch.tensor([[0.5, 3.0, -1.0, 2.0, 1.0], [-1.0, -2.0, -0.5, -3.0, -0.1]])
    expected = torch.tensor([[0.0, 3.0, 0.0, 2.0, 0.0], [0.0] * 5])
    assert torch.equal(model.encode(x), expected)
    torch.testing.assert_close(model.decode(model.encode(x))[1], torch.zeros(5))


def test_gradients_match_a_differentiable_plain_loop():
    # Training is end to end through the unrolled steps: the Gram-matrix route must give the
    # same gradients as backpropagating through the plain loop (on normalised atoms).
    for seed in range(3):
        model, x = random_case(seed)
        with torch.no_grad():
            model.W_dec.mul_(1.5)  # off the unit sphere, so the normalisation's gradient counts
        codes = model.encode(x)
        model.loss(x, model.decode(codes), codes)[0].backward()
        got = model.W_dec.grad.clone(), model.b_dec.grad.clone()

        W, b = model.W_dec.detach().clone().requires_grad_(), model.b_dec.detach().clone().requires_grad_()
        atoms = torch.nn.functional.normalize(W, dim=1)
        x_hat = reference_pursuit(x, atoms, b, model.k)[0] @ atoms + b
        (x - x_hat).pow(2).sum(1).mean().backward()
        torch.testing.assert_close(got[0], W.grad, rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(got[1], b.grad, rtol=1e-7, atol=1e-9)


def test_set_inference_k_rejects_zero_steps():
    model = MatchingPursuitSAE((4,), 6, k=3)
    with pytest.raises(ValueError):
        model.set_inference_k(0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_first_argmax_is_torch_argmax_ties_included(dtype):
    """numpy's argmax on the CPU (torch's for bfloat16): the same index, the first of a tie."""
    torch.manual_seed(0)
    c = torch.randn(3, 5, 40).to(dtype)
    c[1, 2, 7] = c[1, 2, 30] = c[1, 2].max() + 1  # a tie for the maximum: index 7 is first
    chosen = first_argmax(c)
    assert chosen.dtype == torch.long and chosen.shape == (3, 5, 1)
    assert torch.equal(chosen, c.argmax(-1, keepdim=True)) and int(chosen[1, 2, 0]) == 7
    assert not torch.equal(first_argmax(-c), chosen)
