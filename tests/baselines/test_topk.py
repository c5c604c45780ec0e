"""TopK keeps exactly k codes per sample where that is the known answer."""
import torch

from baselines.topk import TopKSAE


def constant_pre_activation_model(bias: torch.Tensor, k: int) -> TopKSAE:
    """W_enc = 0, so every sample's pre-activations equal b_enc."""
    model = TopKSAE((4,), bias.numel(), k=k)
    with torch.no_grad():
        model.W_enc.zero_()
        model.b_enc.copy_(bias)
    return model


def test_keeps_exactly_k_when_all_pre_activations_are_positive():
    model = constant_pre_activation_model(torch.arange(1.0, 11.0), k=3)
    codes = model.encode(torch.randn(5, 4))
    assert ((codes != 0).sum(1) == 3).all()
    assert torch.equal(codes[0], torch.tensor([0.0] * 7 + [8.0, 9.0, 10.0]))


def test_relu_leaves_fewer_than_k_when_few_are_positive():
    bias = torch.tensor([-3.0, -2.0, 1.0, -1.0, 2.0, -4.0])
    codes = constant_pre_activation_model(bias, k=4).encode(torch.randn(5, 4))
    assert ((codes != 0).sum(1) == 2).all()


def test_set_inference_k_changes_the_count():
    model = constant_pre_activation_model(torch.arange(1.0, 11.0), k=3)
    model.set_inference_k(6)
    assert ((model.encode(torch.randn(2, 4)) != 0).sum(1) == 6).all()


def test_aux_loss_reconstructs_the_residual_from_the_largest_dead_latents():
    """AuxK: the residual x - x̂ modelled by the aux_k largest pre-activations among the dead
    latents alone, with gradients to those latents only; no dead latent, no loss."""
    torch.manual_seed(0)
    model = constant_pre_activation_model(torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5]), k=2).train()
    model.aux_k, model.dead_steps = 2, 3
    with torch.no_grad():
        model.steps_since_fired.copy_(torch.tensor([0, 0, 5, 5, 0, 5]))  # latents 2, 3 and 5 dead
    x = torch.randn(7, 4)
    codes = model.encode(x)  # fires 0 and 1; 4 has waited 1 step, under dead_steps
    x_hat = model.decode(codes)
    atoms = model.W_dec.detach()
    residual = (x - x_hat).detach()
    expected = (residual - (3.0 * atoms[2] + 2.0 * atoms[3])).pow(2).sum(-1).mean()
    aux = model.aux_loss(x, x_hat)
    torch.testing.assert_close(aux, expected)
    aux.backward()
    assert model.b_enc.grad.nonzero().flatten().tolist() == [2, 3]
    model.steps_since_fired.zero_()
    codes = model.encode(x)
    assert float(model.aux_loss(x, model.decode(codes))) == 0.0
