"""Matryoshka: the loss is the sum of every nested prefix's own reconstruction error."""
import torch

from baselines._linear import squared_error
from baselines.matryoshka import MatryoshkaSAE, prefix_ends


def test_prefix_ends_always_end_with_the_full_dictionary():
    assert prefix_ends(64, [0.25, 0.5]) == [16, 32, 64]
    assert prefix_ends(10, [0.01, 0.5, 1.0]) == [1, 5, 10]


def test_loss_is_the_sum_of_prefix_losses():
    torch.manual_seed(0)
    model = MatryoshkaSAE((6,), 8, prefix_fractions=[0.25, 0.5, 1.0], k=2).eval()
    x = torch.randn(5, 6)
    codes = torch.rand(5, 8)
    expected = 0.0
    for end in (2, 4, 8):
        prefix_only = codes.clone()
        prefix_only[:, end:] = 0
        expected += squared_error(x, model.decode(prefix_only))
    loss, logs = model.loss(x, model.decode(codes), codes)
    torch.testing.assert_close(loss, expected)
    # ... which is more than the full reconstruction error a plain SAE would minimise.
    assert loss > squared_error(x, model.decode(codes))
    torch.testing.assert_close(logs["mse"], squared_error(x, model.decode(codes)))


def test_one_prefix_is_plain_batchtopk():
    torch.manual_seed(0)
    model = MatryoshkaSAE((6,), 8, prefix_fractions=[1.0], k=2).eval()
    x = torch.randn(5, 6)
    codes = model.encode(x)
    torch.testing.assert_close(model.loss(x, model.decode(codes), codes)[0],
                               squared_error(x, model.decode(codes)))


def test_activation_choice():
    torch.manual_seed(0)
    x = torch.randn(6, 4)
    per_sample = MatryoshkaSAE((4,), 16, activation="topk", k=3).train()
    with torch.no_grad():
        per_sample.b_enc.fill_(10.0)  # all pre-activations positive
    assert ((per_sample.encode(x) != 0).sum(1) == 3).all()
    batch = MatryoshkaSAE((4,), 16, activation="batchtopk", k=3).train()
    with torch.no_grad():
        batch.b_enc.fill_(10.0)
    assert int((batch.encode(x) != 0).sum()) == 3 * 6
