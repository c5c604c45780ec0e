"""JumpReLU: the jump, and the straight-through gradients that reach the threshold."""
import math

import torch

from baselines.jumprelu import JumpReLU, JumpReLUSAE, Step

EPS = 0.1


def test_forward_keeps_values_above_the_threshold_only():
    pre = torch.tensor([[0.2, 0.5, 0.9]])
    threshold = torch.tensor([0.3, 0.5, 0.3])
    assert torch.equal(JumpReLU.apply(pre, threshold, EPS), torch.tensor([[0.0, 0.0, 0.9]]))
    assert torch.equal(Step.apply(pre, threshold, EPS), torch.tensor([[0.0, 0.0, 1.0]]))


def test_pseudo_derivatives_inside_and_outside_the_window():
    # Latent 0 sits within ε/2 of its threshold, latent 1 is far above it.
    pre = torch.tensor([[0.52, 2.0]], requires_grad=True)
    threshold = torch.tensor([0.5, 0.5], requires_grad=True)
    JumpReLU.apply(pre, threshold, EPS).sum().backward()
    torch.testing.assert_close(threshold.grad, torch.tensor([-0.5 / EPS, 0.0]))  # -θ/ε·K
    torch.testing.assert_close(pre.grad, torch.tensor([[1.0, 1.0]]))  # H(pre - θ)
    threshold.grad = None
    pre.grad = None
    Step.apply(pre, threshold, EPS).sum().backward()
    torch.testing.assert_close(threshold.grad, torch.tensor([-1 / EPS, 0.0]))  # -1/ε·K
    assert pre.grad is None  # no STE to the pre-activations


def test_threshold_gets_a_gradient_from_the_model_loss():
    torch.manual_seed(0)
    model = JumpReLUSAE((16,), 32, l0_coeff=0.1, bandwidth=0.05, threshold_init=0.1).train()
    x = torch.randn(64, 16)
    codes = model.encode(x)
    loss, logs = model.loss(x, model.decode(codes), codes)
    loss.backward()
    assert model.scaled_log_threshold.grad.abs().sum() > 0
    assert float(logs["l0"]) == float((codes != 0).sum(1).float().mean())


def test_the_l0_penalty_raises_the_threshold():
    # With no reconstruction to protect (zero decoder), only λ·L0 acts: θ must go up.
    torch.manual_seed(0)
    model = JumpReLUSAE((16,), 32, l0_coeff=1.0, bandwidth=0.5, threshold_init=0.3).train()
    with torch.no_grad():
        model.W_dec.zero_()
    before = model.threshold.clone()
    optimiser = torch.optim.SGD([model.scaled_log_threshold], lr=0.1)
    x = torch.randn(256, 16)
    codes = model.encode(x)
    model.loss(x, model.decode(codes), codes)[0].backward()
    optimiser.step()
    assert (model.threshold >= before).all() and (model.threshold > before).any()


def test_threshold_lr_mult_only_reparametrises():
    plain = JumpReLUSAE((4,), 3, threshold_init=0.2)
    scaled = JumpReLUSAE((4,), 3, threshold_init=0.2, threshold_lr_mult=30)
    torch.testing.assert_close(plain.threshold, scaled.threshold)
    assert math.isclose(float(scaled.scaled_log_threshold[0].detach()), math.log(0.2) / 30, rel_tol=1e-6)
