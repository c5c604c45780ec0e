"""Stacked models: several models of one variant held as one module whose parameters and buffers
carry a leading model axis, so that a sweep (every setting and seed of a variant on a dataset)
trains with batched matrix products and one fused optimiser step instead of one small step per
model (SPEC section 4; at the default's sizes a single step is 3-4x its matrix products).

The variant contract (benchmark/variant.py): a class whose `stackable_hparams` is non-empty
writes its encode / decode / loss / after_step so that they also accept a stacked instance:
- `self.n_models` is M (it is None on an ordinary instance);
- every parameter and buffer has a leading axis of length M, zero-padded to the largest shape
  among the models (e.g. BatchTopK's thresholds, sized by k); `unstack` cuts each back;
- each hyperparameter named in `stackable_hparams` is a 1-D tensor of the M values;
- inputs are (M, B, *input_shape), codes (M, B, n_latents), and `loss` returns the M per-model
  losses (M,), whose sum is back-propagated: the models must not interact.
Hyperparameters not in `stackable_hparams` must be equal across a stack (`group_key`).
"""
import copy

import torch
from torch import nn

from benchmark.variant import SAE


def is_stackable(cls) -> bool:
    return bool(getattr(cls, "stackable_hparams", frozenset()))


def group_key(cls, n_latents: int, hparams: dict) -> tuple:
    """Models with equal keys can share one stack: same class, width and fixed hyperparameters."""
    fixed = {k: v for k, v in hparams.items() if k not in cls.stackable_hparams}
    return cls.__qualname__, cls.__module__, int(n_latents), repr(sorted(fixed.items()))


def _padded_stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Stack along a new first axis, zero-padding each tensor to the largest shape."""
    shape = [max(sizes) for sizes in zip(*(t.shape for t in tensors))]
    out = tensors[0].new_zeros(len(tensors), *shape)
    for i, t in enumerate(tensors):
        out[(i, *(slice(0, s) for s in t.shape))] = t
    return out


def _hparam_tensor(values: list, like: torch.Tensor) -> torch.Tensor:
    """The M values of one hyperparameter: long for integers (k), else in the parameters' dtype
    (a float32 coefficient would round a float64 model's 0.05)."""
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return torch.tensor(values, dtype=torch.long, device=like.device)
    return torch.tensor([float(v) for v in values], dtype=like.dtype, device=like.device)


@torch.no_grad()
def stack(models: list[SAE], hparams: list[dict]) -> SAE:
    """One stacked module holding `models` (same class, width and fixed hyperparameters);
    `hparams[m]` are model m's constructor hyperparameters."""
    cls = type(models[0])
    keys = {group_key(cls, m.n_latents, h) for m, h in zip(models, hparams)}
    if len(keys) != 1 or any(type(m) is not cls for m in models):
        raise ValueError("stacked models must share their class, width and fixed hyperparameters")
    stacked = copy.deepcopy(models[0])
    for name, _ in list(models[0].named_parameters()):
        module, attr = _owner(stacked, name)
        tensors = [_get(m, name).detach() for m in models]
        setattr(module, attr, nn.Parameter(_padded_stack(tensors)))
    for name, _ in list(models[0].named_buffers()):
        module, attr = _owner(stacked, name)
        module.register_buffer(attr, _padded_stack([_get(m, name) for m in models]))
    like = next(models[0].parameters())
    for name in cls.stackable_hparams:
        # The models' own values: a model whose hparams leave `name` to its default has it too.
        setattr(stacked, name, _hparam_tensor([getattr(m, name) for m in models], like))
    stacked.n_models = len(models)
    return stacked


@torch.no_grad()
def unstack(stacked: SAE, models: list[SAE], rows: list[int] | None = None) -> None:
    """Copy rows `rows` (default: all) of the stacked state into `models`, in order, each cut to
    the model's own shapes."""
    rows = list(range(stacked.n_models)) if rows is None else rows
    for name, target in list(models[0].named_parameters()) + list(models[0].named_buffers()):
        source = _get(stacked, name)
        for model, row in zip(models, rows):
            own = _get(model, name)
            own.copy_(source[(row, *(slice(0, s) for s in own.shape))])


@torch.no_grad()
def keep_rows(stacked: SAE, rows: list[int], optimiser: torch.optim.Optimizer | None = None):
    """Drop every model of the stack but `rows` (in place), with the optimiser's per-parameter
    state (Adam's moments) sliced the same way; returns the new optimiser."""
    index = torch.tensor(rows, device=next(stacked.parameters()).device)
    old_state = {}
    for name, param in list(stacked.named_parameters()):
        module, attr = _owner(stacked, name)
        new = nn.Parameter(param.detach().index_select(0, index))
        if optimiser is not None:
            old_state[name] = optimiser.state.get(param, {})
        setattr(module, attr, new)
    for name, buffer in list(stacked.named_buffers()):
        module, attr = _owner(stacked, name)
        module.register_buffer(attr, buffer.index_select(0, index))
    for name in type(stacked).stackable_hparams:
        value = getattr(stacked, name, None)
        if isinstance(value, torch.Tensor):
            setattr(stacked, name, value.index_select(0, index))
    stacked.n_models = len(rows)
    if optimiser is None:
        return None
    new_optimiser = type(optimiser)(stacked.parameters(), **optimiser.defaults)
    for name, param in stacked.named_parameters():
        state = {k: (v.index_select(0, index) if isinstance(v, torch.Tensor) and v.ndim > 0 else v)
                 for k, v in old_state[name].items()}
        if state:
            new_optimiser.state[param] = state
    new_optimiser.param_groups[0]["lr"] = optimiser.param_groups[0]["lr"]
    return new_optimiser


def _owner(module: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    *path, attr = dotted.split(".")
    for part in path:
        module = getattr(module, part)
    return module, attr


def _get(module: nn.Module, dotted: str) -> torch.Tensor:
    owner, attr = _owner(module, dotted)
    return getattr(owner, attr)
