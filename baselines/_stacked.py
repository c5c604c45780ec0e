"""Per-model hyperparameters of a stacked model (benchmark/training/stacking.py).

On an ordinary instance a stackable hyperparameter is a number; on a stacked one it is a (M,)
tensor, one value per model, to be broadcast against tensors whose first axis is the model's.
The variants write their maths once in terms of these helpers, which leave numbers untouched,
so an ordinary instance computes exactly the numbers it always did.
"""
import torch


def per_model(value, like: torch.Tensor):
    """`value` broadcastable against `like`: a stacked (M,) tensor viewed (M, 1, ..., 1) to
    match `like`'s leading model axis; a number (or 0-d tensor) as it is."""
    if isinstance(value, torch.Tensor) and value.dim() == 1:
        return value.view(-1, *[1] * (like.dim() - 1))
    return value


def largest(value) -> int:
    """The largest of the models' values (a number as it is): e.g. the k every model's top-k
    is taken at before each model masks its own."""
    return int(value.max()) if isinstance(value, torch.Tensor) else int(value)


def below(k, like: torch.Tensor) -> torch.Tensor | None:
    """Mask (..., n) of the positions n < k along `like`'s last axis, per model (positions past
    a model's own k are the padding of a stack sized by the largest k); None for a number k,
    where every position is the model's own."""
    if not isinstance(k, torch.Tensor):
        return None
    positions = torch.arange(like.shape[-1], device=like.device)
    return positions < per_model(k, like)
