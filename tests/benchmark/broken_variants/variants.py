"""Submissions for the tests, each broken in one way (plus two healthy ones).

The contract check catches the first group before training (exit 2, one line each); the second
group passes the check and fails only while training or evaluating (an `error` row each, while
the other cells run on). Counters start at zero on the fresh model the runner trains, so the
`*InTraining` classes behave during the check and misbehave a few steps into training.
"""
import faulthandler
import os
import signal

import torch
from torch import nn

from benchmark.variant import SAE


class Tiny(SAE):
    """A healthy ReLU SAE: the base every broken class changes in one way."""

    def __init__(self, input_shape, n_latents, l1_coeff=0.01):
        super().__init__(input_shape, n_latents)
        self.enc = nn.Linear(self.input_dim, n_latents)
        self.dec = nn.Linear(n_latents, self.input_dim)
        self.l1_coeff = l1_coeff
        self.calls = 0

    def encode(self, x):
        self.calls += 1
        return torch.relu(self.enc(x.flatten(1)))

    def decode(self, codes):
        return self.dec(codes).view(-1, *self.input_shape)

    def loss(self, x, x_hat, codes):
        mse = (x - x_hat).pow(2).flatten(1).sum(1).mean()
        return mse + self.l1_coeff * codes.sum(1).mean(), {"mse": mse.detach()}


class PlainModule(nn.Module):
    """Healthy, and not an SAE subclass: the harness supplies SAE's defaults."""

    def __init__(self, input_shape, n_latents):
        super().__init__()
        dim = int(torch.tensor(input_shape).prod())
        self.shape = tuple(input_shape)
        self.enc = nn.Linear(dim, n_latents)
        self.dec = nn.Linear(n_latents, dim)

    def encode(self, x):
        return torch.relu(self.enc(x.flatten(1)))

    def decode(self, codes):
        return self.dec(codes).view(-1, *self.shape)

    def loss(self, x, x_hat, codes):
        mse = (x - x_hat).pow(2).mean()
        return mse + 1e-3 * codes.abs().mean(), {"mse": float(mse)}


# ----- caught by the contract check -----
class RaisesInEncode(Tiny):
    def encode(self, x):
        raise RuntimeError("encoder exploded")


class WrongShape(Tiny):
    def encode(self, x):
        return super().encode(x)[:, :3]


class WrongDtype(Tiny):
    def decode(self, codes):
        return super().decode(codes).double()


class NaNLoss(Tiny):
    def loss(self, x, x_hat, codes):
        return torch.tensor(float("nan"), requires_grad=True) * self.enc.bias.sum(), {}


class NoGradient(Tiny):
    def __init__(self, input_shape, n_latents):
        super().__init__(input_shape, n_latents)
        self.unused = nn.Parameter(torch.zeros(3))


class MissingLoss(nn.Module):
    def __init__(self, input_shape, n_latents):
        super().__init__()

    def encode(self, x):
        return x

    def decode(self, codes):
        return codes


class NotAModule:
    def __init__(self, input_shape, n_latents):
        pass


class TwoProblems(NoGradient):
    """A parameter without gradient *and* a failing after_step: both are reported."""

    def after_step(self):
        raise AttributeError("no such attribute 'atoms_'")


class BadHparam(Tiny):
    """Healthy, but the test's config passes it a keyword it does not take."""


# ----- pass the check, fail while training or evaluating -----
class HangsInTraining(Tiny):
    def encode(self, x):
        if self.calls >= 3:
            while True:  # an endless loop: only the time limit ends it
                pass
        return super().encode(x)


class CrashesInTraining(Tiny):
    def encode(self, x):
        if self.calls >= 3:
            faulthandler.disable()  # (pytest's handler would print this child's stack)
            os.kill(os.getpid(), signal.SIGSEGV)  # what a crash in native code looks like
        return super().encode(x)


class ExitsInTraining(Tiny):
    def encode(self, x):
        if self.calls >= 3:
            os._exit(3)
        return super().encode(x)


class NaNInTraining(Tiny):
    def loss(self, x, x_hat, codes):
        loss, logs = super().loss(x, x_hat, codes)
        return (loss * float("nan") if self.calls >= 3 else loss), logs


class FailsInEvaluation(Tiny):
    def encode(self, x):
        if not self.training:
            raise ValueError("no inference mode")
        return super().encode(x)
