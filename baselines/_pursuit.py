"""Matching pursuit on correlations through the Gram matrix, with a hand-written backward pass.

`pursuit_steps(c, G, k)` runs k steps of: s = argmax_j c_j, a = max(c_s, 0), c ← c - a·G[s],
and returns the chosen atoms and their coefficients (MP-SAE's encoder, baselines/mp.py).

Why not let autograd record the loop: each step's G[s] is a (B, K) gather that autograd keeps
for the backward pass (k·B·K floats: 2 GB at B = K = 4096, k = 32), and the backward of each
gather writes a fresh zero (K, K) gradient that is then summed (k full K×K passes). The backward
below walks the steps in reverse with one (B, K) gradient and one (K, K) accumulator, keeping
only the chosen atoms and coefficients (B·k) from the forward pass. Gradients are those of the
plain loop (tests/baselines/test_mp.py checks them against autograd through a textbook loop).

Backward of one step, c' = c - a·G[s] with a = relu(c[s]), given dL/dc' and dL/da (direct):
    dL/da   += -<dL/dc', G[s]>
    dL/dG[s] += -a · dL/dc'
    dL/dc    = dL/dc' + e_s · dL/da · 1[a > 0]
"""
import torch
from torch.autograd.function import once_differentiable


class _PursuitSteps(torch.autograd.Function):
    @staticmethod
    def forward(ctx, correlations, gram, k):
        c = correlations.clone()  # updated in place below
        chosen = torch.empty(c.shape[0], k, dtype=torch.long, device=c.device)
        coefs = c.new_empty(c.shape[0], k)
        for t in range(k):
            selected = c.argmax(1, keepdim=True)
            coef = c.gather(1, selected).clamp_min_(0)
            c.sub_(gram.index_select(0, selected.squeeze(1)).mul_(coef))
            chosen[:, t : t + 1] = selected
            coefs[:, t : t + 1] = coef
        ctx.save_for_backward(gram, chosen, coefs)
        ctx.mark_non_differentiable(chosen)
        return chosen, coefs

    @staticmethod
    @once_differentiable
    def backward(ctx, _grad_chosen, grad_coefs):
        gram, chosen, coefs = ctx.saved_tensors
        grad_c = grad_coefs.new_zeros(chosen.shape[0], gram.shape[0])  # dL/dc after the last step: 0
        grad_gram = torch.zeros_like(gram) if ctx.needs_input_grad[1] else None
        for t in reversed(range(chosen.shape[1])):
            selected, coef = chosen[:, t].contiguous(), coefs[:, t : t + 1]  # a strided index is slow
            rows = gram.index_select(0, selected)
            grad_coef = grad_coefs[:, t : t + 1] - (grad_c * rows).sum(1, keepdim=True)
            if grad_gram is not None:
                grad_gram.index_add_(0, selected, grad_c * -coef)
            grad_c.scatter_add_(1, selected[:, None], grad_coef * (coef > 0))
        return grad_c, grad_gram, None


def pursuit_steps(correlations: torch.Tensor, gram: torch.Tensor, k: int):
    """(chosen atoms (B, k) long, coefficients (B, k)) of k matching-pursuit steps, from the
    initial correlations <x - b, d_j> (B, K) and the Gram matrix G = D·Dᵀ (K, K)."""
    return _PursuitSteps.apply(correlations, gram, k)


class _Gram(torch.autograd.Function):
    """D·Dᵀ. Its gradient is (g + gᵀ)·D, one K×K×d product where autograd's generic matrix
    product backward does two."""

    @staticmethod
    def forward(ctx, atoms):
        ctx.save_for_backward(atoms)
        return atoms @ atoms.t()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (atoms,) = ctx.saved_tensors
        return (grad + grad.t()) @ atoms


def gram_matrix(atoms: torch.Tensor) -> torch.Tensor:
    """atoms @ atoms.T (K, K); the plain product when no gradient is recorded or when traced
    (fvcore's FLOP count cannot see inside an autograd.Function)."""
    if torch.is_grad_enabled() and atoms.requires_grad and not torch.jit.is_tracing():
        return _Gram.apply(atoms)
    return atoms @ atoms.t()
