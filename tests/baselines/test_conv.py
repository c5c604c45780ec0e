"""ConvAE: the bottleneck geometry and its codes."""
import pytest
import torch

from baselines.conv import ConvAE


@pytest.mark.parametrize("shape, step", [((3, 32, 32), 64), ((1, 8, 8), 4), ((3, 16, 12), 12)])
def test_latent_step_is_the_bottleneck_area(shape, step):
    assert ConvAE.latent_step(shape) == step
    model = ConvAE(shape, 5 * step)
    x = torch.rand(2, *shape)
    bottleneck = model.encoder(x)
    assert bottleneck.shape == (2, 5, shape[1] // 4, shape[2] // 4)
    codes = model.encode(x)
    assert codes.shape == (2, 5 * step) and (codes >= 0).all()  # a ReLU bottleneck
    assert torch.equal(codes, bottleneck.flatten(1))
    assert model.decode(codes).shape == (2, *shape)


def test_rejects_widths_and_sizes_that_do_not_fit():
    with pytest.raises(ValueError, match="multiple of 64"):
        ConvAE((3, 32, 32), 100)
    with pytest.raises(ValueError, match="divisible by 4"):
        ConvAE((3, 30, 32), 56)


def test_init_puts_the_mean_pixel_in_the_output_bias():
    model = ConvAE((3, 8, 8), 8)
    x = torch.rand(10, 3, 8, 8)
    model.init_from_data(x)
    torch.testing.assert_close(model.decoder[-1].bias, x.mean(dim=(0, 2, 3)))
