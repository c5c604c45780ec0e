"""The variant contract (SPEC section 2) and the defaults every variant inherits."""
import math

import torch
from torch import nn


class SAE(nn.Module):
    """Base class of every SAE variant.

    Subclasses implement `encode`, `decode` and `loss`. Constructor signature:
    `Variant(input_shape, n_latents, **hparams)`; hyperparameters come from the preset YAML.

    Optional capabilities:
    - `requires`: e.g. {"image"} (needs C×H×W input) or {"concepts"} (needs concept labels;
      `encode(x, concepts=labels)` is then called with a (B, n_factors) long tensor).
    - `set_inference_k(k)` with the current value readable as `self.k`: adaptive sparsity.
    - `init_from_data(x)`: data-dependent initialisation (e.g. decoder bias = mean input),
      called once before training with the training tensor.
    - `after_step()`: called after every optimiser step (e.g. renormalise atoms).
    - `configure(dataset, n_latents, hparams)`: classmethod that may derive constructor arguments
      from the dataset (e.g. the concept vocabulary) before the model is built.
    - `stackable_hparams`: the hyperparameters that may differ between the models of one stack
      (e.g. {"k"}); non-empty only for a variant whose maths accepts a leading model axis, so
      that its sweep trains as one stacked model (benchmark/training/stacking.py states the contract).
    """

    requires: frozenset = frozenset()
    stackable_hparams: frozenset = frozenset()
    n_models: int | None = None  # M on a stacked instance (benchmark/training/stacking.py), else None

    def __init__(self, input_shape: tuple[int, ...], n_latents: int):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.n_latents = int(n_latents)

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, x, x_hat, codes) -> tuple[torch.Tensor, dict]:
        """Return (scalar loss, logs). Log values may be floats or detached 0-d tensors:
        the training loop reads them once per epoch, so a GPU is not synchronised every step."""
        raise NotImplementedError

    def forward(self, x):
        codes = self.encode(x)
        return self.decode(codes), codes

    # ----- optional capabilities, with defaults -----
    @classmethod
    def latent_step(cls, input_shape) -> int:
        """n_latents must be a multiple of this (e.g. a conv bottleneck's h·w); used when the
        harness matches this variant's parameter count to another's."""
        return 1

    @classmethod
    def configure(cls, dataset, n_latents: int, hparams: dict) -> tuple[int, dict]:
        return n_latents, dict(hparams)

    def init_from_data(self, x: torch.Tensor) -> None:
        pass

    def after_step(self) -> None:
        pass

    @classmethod
    def supports_inference_k(cls) -> bool:
        return cls.set_inference_k is not SAE.set_inference_k

    def set_inference_k(self, k: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no adaptive sparsity")

    @torch.no_grad()
    def atoms(self, chunk: int = 512) -> torch.Tensor:
        """(n_latents, *input_shape): the decoder's response to each unit code minus its
        response to the zero code. Exact for any affine decoder; for a nonlinear one it is
        the response to a unit step of each latent from zero."""
        device = next(self.parameters()).device
        zero = self.decode(torch.zeros(1, self.n_latents, device=device))
        out = []
        for start in range(0, self.n_latents, chunk):
            stop = min(start + chunk, self.n_latents)
            unit = torch.zeros(stop - start, self.n_latents, device=device)
            unit[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            out.append(self.decode(unit) - zero)
        return torch.cat(out).reshape(self.n_latents, *self.input_shape)


def encode_batch(model: SAE, x: torch.Tensor, concepts: torch.Tensor | None = None) -> torch.Tensor:
    """Encode, passing concept labels only to variants that declare they need them."""
    if "concepts" in model.requires:
        if concepts is None:
            raise ValueError(f"{type(model).__name__} needs concept labels")
        return model.encode(x, concepts=concepts)
    return model.encode(x)
