"""The contract check of an external variant (SPEC section 2), run before any training.

On a small random batch shaped like each dataset of the run, the model must: build from
`Variant(input_shape, n_latents, **hparams)`; encode to finite codes of shape (B, n_latents) and
the input's dtype and device; decode to a finite (B, *input_shape); return from `loss` a finite
scalar tensor and a dict of numbers; send a gradient to every trainable parameter; survive
`after_step()`; and, if it overrides `atoms()`, give atoms of shape (n_latents, *input_shape).
Every failure is one line.
"""
import math

import torch

from benchmark.data import Dataset
from benchmark.errors import short_error
from benchmark.variant import SAE, encode_batch

CHECK_BATCH = 8


def random_batch(dataset: Dataset, device: str, batch: int = CHECK_BATCH):
    """Inputs of the dataset's shape (images in [0, 1], vectors standard normal) and, when the
    dataset has concepts, random labels within its vocabulary."""
    generator = torch.Generator().manual_seed(0)
    shape = (batch, *dataset.input_shape)
    x = torch.rand(shape, generator=generator) if dataset.is_image else torch.randn(shape, generator=generator)
    concepts = None
    if dataset.train_concepts is not None:
        sizes = dataset.concept_sizes()
        concepts = torch.stack([torch.randint(0, n, (batch,), generator=generator) for n in sizes], 1)
        concepts = concepts.to(device)
    return x.to(dataset.train.dtype).to(device), concepts


class _Checker:
    def __init__(self):
        self.problems: list[str] = []

    def fail(self, why: str) -> None:
        self.problems.append(why)

    def call(self, what: str, fn):
        """fn(), or None with the exception recorded."""
        try:
            return fn()
        except Exception as err:
            self.fail(f"{what} raised {short_error(err)}")
            return None

    def tensor(self, what: str, value, shape: tuple, like: torch.Tensor) -> bool:
        """Is `value` a finite tensor of `shape` with the dtype and device of `like`?"""
        if not isinstance(value, torch.Tensor):
            self.fail(f"{what} returned {type(value).__name__}; expected a tensor of shape {shape}")
            return False
        good = True
        if tuple(value.shape) != shape:
            self.fail(f"{what} returned shape {tuple(value.shape)}; expected {shape}")
            good = False
        if value.dtype != like.dtype:
            self.fail(f"{what} returned dtype {value.dtype}; expected {like.dtype} (the input's)")
            good = False
        if value.device != like.device:
            self.fail(f"{what} returned a tensor on {value.device}; expected {like.device} (the input's)")
            good = False
        if good and not torch.isfinite(value).all():
            nan = int(torch.isnan(value).sum())
            self.fail(f"{what} returned non-finite values ({nan} NaN, {int(torch.isinf(value).sum())} inf)")
            good = False
        return good


def check_on_dataset(cls, dataset: Dataset, n_latents: int, hparams: dict, device: str) -> list[str]:
    """The contract problems of `cls` on a random batch shaped like `dataset` (empty: none)."""
    check = _Checker()
    torch.manual_seed(0)
    args = ", ".join([str(dataset.input_shape), str(n_latents)] + [f"{k}={v!r}" for k, v in hparams.items()])
    model = check.call(f"{cls.__name__}({args})", lambda: cls(dataset.input_shape, n_latents, **hparams).to(device))
    if model is None:
        return check.problems
    if not getattr(cls, "trainable", True):  # a loaded checkpoint: evaluated, never trained
        return _check_inference(check, model, dataset, n_latents, device)
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not params:
        return [f"{cls.__name__} has no trainable parameters"]
    x, concepts = random_batch(dataset, device)
    batch = x.shape[0]
    model.train()
    check.call("init_from_data(x)", lambda: model.init_from_data(x))
    codes = check.call("encode(x)", lambda: encode_batch(model, x, concepts))
    codes_ok = codes is not None and check.tensor("encode(x)", codes, (batch, n_latents), x)
    decode_input = codes if codes_ok else torch.rand(batch, n_latents, device=x.device)
    x_hat = check.call("decode(codes)", lambda: model.decode(decode_input))
    x_hat_ok = x_hat is not None and check.tensor("decode(codes)", x_hat, tuple(x.shape), x)
    if codes_ok and x_hat_ok:
        out = check.call("loss(x, x_hat, codes)", lambda: model.loss(x, x_hat, codes))
        loss = _check_loss(check, out) if out is not None else None
        if loss is not None:
            model.zero_grad(set_to_none=True)
            before = len(check.problems)
            check.call("loss.backward()", loss.backward)
            if len(check.problems) == before:
                _check_gradients(check, params)
    check.call("after_step()", model.after_step)
    if type(model).atoms is not SAE.atoms:  # the default is right whenever decode is
        model.eval()
        with torch.no_grad():
            atoms = check.call("atoms()", model.atoms)
        if atoms is not None:
            check.tensor("atoms()", atoms, (n_latents, *dataset.input_shape), x)
    return check.problems


def _check_inference(check: _Checker, model, dataset: Dataset, n_latents: int, device: str) -> list[str]:
    """Codes and reconstructions of the right shape, dtype and device, finite (no loss, no gradients)."""
    x, concepts = random_batch(dataset, device)
    model.eval()
    with torch.no_grad():
        codes = check.call("encode(x)", lambda: encode_batch(model, x, concepts))
        if codes is not None and check.tensor("encode(x)", codes, (x.shape[0], n_latents), x):
            x_hat = check.call("decode(codes)", lambda: model.decode(codes))
            if x_hat is not None:
                check.tensor("decode(codes)", x_hat, tuple(x.shape), x)
    return check.problems


def _check_loss(check: _Checker, out) -> torch.Tensor | None:
    """The loss tensor if `out` is a valid (finite scalar tensor, dict of numbers), else None."""
    what = "loss(x, x_hat, codes)"
    if not (isinstance(out, tuple) and len(out) == 2):
        check.fail(f"{what} must return (scalar tensor, dict of logs); got {type(out).__name__}")
        return None
    loss, logs = out
    if not isinstance(logs, dict):
        check.fail(f"{what} returned logs of type {type(logs).__name__}; expected a dict")
    else:
        for key, value in logs.items():
            try:
                float(value.detach() if isinstance(value, torch.Tensor) else value)
            except (TypeError, ValueError, RuntimeError):
                check.fail(f"{what} log {key!r} is not a number ({type(value).__name__})")
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        check.fail(f"{what} returned a loss of shape {shape}; expected a scalar (0-d) tensor")
        return None
    if not math.isfinite(float(loss.detach())):
        check.fail(f"{what} returned a non-finite loss ({float(loss.detach())})")
        return None
    if not loss.requires_grad:
        check.fail(f"{what} returned a loss that no parameter influences (it has no gradient)")
        return None
    return loss


def _check_gradients(check: _Checker, params) -> None:
    missing = [name for name, p in params if p.grad is None]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        check.fail(f"parameters that receive no gradient from the loss: {shown}")
    bad = [name for name, p in params if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad:
        check.fail(f"non-finite gradients in: {', '.join(bad[:6])}")


def merge_by_dataset(name: str, found: dict[str, list[str]]) -> list[str]:
    """`{dataset: problems}` as lines `NAME on d1, d2: problem`: the same problem on several
    datasets is one line."""
    datasets_of: dict[str, list[str]] = {}
    for dataset, problems in found.items():
        for problem in problems:
            datasets_of.setdefault(problem, []).append(dataset)
    return [f"{name} on {', '.join(ds)}: {problem}" for problem, ds in datasets_of.items()]
