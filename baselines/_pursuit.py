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

A stacked MP (benchmark/training/stacking.py) pursues all its models at once, every tensor with a
leading model axis, for the largest k's steps; a model's steps past its own k get coefficient 0
(atom 0). The models are pursued in order of decreasing k, so that step t touches only the
leading models whose k exceeds t (a view): a sweep k = 6, 12, 24, 40 does 82 model-steps of
pursuit, not 160. The skipped steps are ones whose coefficient and gradients are exactly 0:
each model's pursuit and gradients are exactly its own (tests/baselines/test_fast_paths.py).
A training run is the same to float rounding, not bit for bit: the padding puts its zero terms
on atom 0 instead of the atom a further step would pick, and, as far as we can tell, the
gradient sums over the code's support are not blocked the same way (in the default's published
run 101 of 1,628 MP values moved, by up to 3e-6 relative, or further where a superposition
model then stopped at another step).
"""
import torch
from torch.autograd.function import once_differentiable

from baselines._cpu import numpy_array
from baselines._sparse import flat_rows
from baselines._stacked import largest


def _rows(table, offsets, selected):
    """Rows `selected` (B,) of the Gram matrix, (B, K); on a stack, model m's own rows
    selected[m] (M, B), (M, B, K), from the flattened table (`flat_rows`). Also returns the
    row indices into the table."""
    index = selected if offsets is None else selected + offsets
    return table.index_select(0, index.flatten()).view(*selected.shape, table.shape[-1]), index


class _PursuitSteps(torch.autograd.Function):
    """Correlations (B, K) and Gram matrix (K, K), or per model (M, B, K) and (M, K, K) with the
    models in order of decreasing k. `active[t]`: how many leading models take step t (None
    unstacked); the others' step t has coefficient 0 and atom 0, so it changes nothing, and is
    not computed."""

    @staticmethod
    def forward(ctx, correlations, gram, steps, active):
        c = correlations.clone()  # updated in place below
        chosen = torch.zeros(*c.shape[:-1], steps, dtype=torch.long, device=c.device)
        coefs = c.new_zeros(*c.shape[:-1], steps)
        table, offsets = flat_rows(gram)
        for t in range(steps):
            m = _leading(active, t)
            step_c = c[:m]
            selected = first_argmax(step_c)
            coef = step_c.gather(-1, selected).clamp_min_(0)
            step_c.sub_(_rows(table, _head(offsets, m), selected.squeeze(-1))[0].mul_(coef))
            chosen[:m, ..., t : t + 1] = selected
            coefs[:m, ..., t : t + 1] = coef
        ctx.save_for_backward(gram, chosen, coefs)
        ctx.mark_non_differentiable(chosen)
        ctx.active = active
        return chosen, coefs

    @staticmethod
    @once_differentiable
    def backward(ctx, _grad_chosen, grad_coefs):
        gram, chosen, coefs = ctx.saved_tensors
        grad_c = grad_coefs.new_zeros(*chosen.shape[:-1], gram.shape[-1])  # dL/dc after the last step: 0
        grad_gram = torch.zeros_like(gram) if ctx.needs_input_grad[1] else None
        table, offsets = flat_rows(gram)
        grad_table = None if grad_gram is None else flat_rows(grad_gram)[0]  # a view of grad_gram
        for t in reversed(range(chosen.shape[-1])):
            m = _leading(ctx.active, t)
            step_grad = grad_c[:m]
            selected, coef = chosen[:m, ..., t].contiguous(), coefs[:m, ..., t : t + 1]  # a strided index is slow
            rows, index = _rows(table, _head(offsets, m), selected)
            grad_coef = grad_coefs[:m, ..., t : t + 1] - (step_grad * rows).sum(-1, keepdim=True)
            if grad_table is not None:
                grad_table.index_add_(0, index.flatten(), (step_grad * -coef).flatten(0, -2))
            step_grad.scatter_add_(-1, selected.unsqueeze(-1), grad_coef * (coef > 0))
        return grad_c, grad_gram, None, None


def first_argmax(c: torch.Tensor) -> torch.Tensor:
    """(..., 1): the index of each row's largest value, the first where several tie (as
    torch.argmax). On the CPU numpy's argmax, ~5x faster than torch's at MP's sizes (20 models'
    batch of 256 by 256 latents: 0.55 against 3.0 ms on one core); elsewhere torch's."""
    array = numpy_array(c)
    if array is None:
        return c.argmax(-1, keepdim=True)
    return torch.from_numpy(array.argmax(-1)).unsqueeze(-1)


def _leading(active, t: int):
    """How many leading models take step t: a slice bound (None: all of them)."""
    return None if active is None else active[t]


def _head(offsets, m):
    return offsets if offsets is None else offsets[:m]


def pursuit_steps(correlations: torch.Tensor, gram: torch.Tensor, k):
    """(chosen atoms (B, k) long, coefficients (B, k)) of k matching-pursuit steps, from the
    initial correlations <x - b, d_j> (B, K) and the Gram matrix G = D·Dᵀ (K, K). On a stack
    ((M, B, K), (M, K, K), k (M,)): the largest k steps, model m's steps from its own k on
    choosing atom 0 with coefficient 0."""
    steps = largest(k)
    if not isinstance(k, torch.Tensor):
        return _PursuitSteps.apply(correlations, gram, steps, None)
    order = torch.argsort(k, descending=True, stable=True)  # the models that step longest first
    ks = k.tolist()
    active = [sum(own > t for own in ks) for t in range(steps)]
    chosen, coefs = _PursuitSteps.apply(correlations.index_select(0, order), gram.index_select(0, order),
                                        steps, active)
    back = torch.argsort(order)
    return chosen.index_select(0, back), coefs.index_select(0, back)


class _Gram(torch.autograd.Function):
    """D·Dᵀ. Its gradient is (g + gᵀ)·D, one K×K×d product where autograd's generic matrix
    product backward does two."""

    @staticmethod
    def forward(ctx, atoms):
        ctx.save_for_backward(atoms)
        return atoms @ atoms.mT

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (atoms,) = ctx.saved_tensors
        return (grad + grad.mT) @ atoms


def gram_matrix(atoms: torch.Tensor) -> torch.Tensor:
    """atoms @ atoms.T (K, K), or per model (M, K, K); the plain product when no gradient is
    recorded or when traced (fvcore's FLOP count cannot see inside an autograd.Function)."""
    if torch.is_grad_enabled() and atoms.requires_grad and not torch.jit.is_tracing():
        return _Gram.apply(atoms)
    return atoms @ atoms.mT
