"""Shared by the tests against the real libraries (test_real_*.py): random weights with nothing
trivially zero, the suite's model of a folder built as `eval --checkpoint` builds it, and the
largest difference of two outputs."""
import torch

from benchmark.interop import checkpoint_class

TOLERANCE = 1e-5  # float32: the same formulas, summed in another order
N_INPUTS = 64
INSTALL = "install it with pip install -e '.[interop]'"


def inputs(d_in: int, seed: int = 1) -> torch.Tensor:
    """Standard normal inputs: with `randomise`d weights about half the latents are active and a
    threshold in [0.2, 0.8) stops some of those."""
    return torch.randn(N_INPUTS, d_in, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def randomise(module: torch.nn.Module, seed: int = 0, positive=("threshold", "topk_threshold")) -> None:
    """Redraw every floating parameter and buffer of `module` in place: matrices N(0, 1/d) (d their
    smaller side, so pre-activations are of order one) with rows scaled by U(0.5, 1.5) (decoder
    norms that are not one), vectors and scalars N(0, 0.3²), thresholds (`positive`) U(0.2, 0.8)."""
    g = torch.Generator().manual_seed(seed)
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if not tensor.dtype.is_floating_point:
            continue  # k, group sizes
        if name.rsplit(".", 1)[-1] in positive:
            new = 0.2 + 0.6 * torch.rand(tensor.shape, generator=g)
        elif tensor.dim() >= 2:
            rows = 0.5 + torch.rand(tensor.shape[0], 1, generator=g)
            new = torch.randn(tensor.shape, generator=g) / min(tensor.shape) ** 0.5 * rows
        else:
            new = 0.3 * torch.randn(tensor.shape, generator=g)
        tensor.copy_(new)


def suite_model(folder):
    """The suite's model of a checkpoint folder (format detected, read as float32), as `eval` builds it."""
    cls = checkpoint_class(folder)
    return cls((cls.checkpoint.d_in,), cls.checkpoint.d_sae).eval()


def gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float() - b.detach().float()).abs().max())


@torch.no_grad()
def gaps(ours, x: torch.Tensor, codes: torch.Tensor, x_hat: torch.Tensor) -> tuple[float, float]:
    """(codes gap, reconstruction gap) of the suite's model against a library's outputs on x."""
    our_codes = ours.encode(x)
    return gap(our_codes, codes), gap(ours.decode(our_codes), x_hat)
