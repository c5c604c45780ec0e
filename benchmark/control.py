"""The control contract (SPEC section 2): untrained reference bases that every SAE must beat.

A control is an SAE (encode, decode, atoms) that is never trained: the runner builds it and
calls `fit(x_train)`, a closed-form fit on the training split, then scores it on every task
like a variant. Its sparsity settings are not swept by hand: `settings(targets, dataset)` gives
one setting per target L0 of the dataset (plus, where the achieved L0 can fall short of the
setting, one above the largest target, so that every target is bracketed).
"""
import torch

from benchmark.variant import SAE


class Control(SAE):
    trainable = False  # the runner fits it in closed form and never enters the training loop
    is_control = True

    @classmethod
    def settings(cls, targets: list[float], dataset) -> list[dict]:
        """Hyperparameter settings covering the target L0s on `dataset`."""
        ks = sorted({max(1, round(t)) for t in targets} | {2 * max(1, round(max(targets)))})
        return [{"k": k} for k in ks]

    def fit(self, x: torch.Tensor) -> None:
        raise NotImplementedError

    def loss(self, x, x_hat, codes):
        raise RuntimeError(f"{type(self).__name__} is a control: it is fitted, never trained")


def is_control(cls) -> bool:
    return bool(getattr(cls, "is_control", False))


def is_trainable(cls) -> bool:
    return bool(getattr(cls, "trainable", True))
