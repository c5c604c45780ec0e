"""The CPU's fast paths: a bool mask as the 0/1 factor that torch.where and masked_fill stand
for, and when a tensor can go to numpy."""
import pytest
import torch

from baselines._cpu import float_mask, numpy_array


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_a_product_with_the_mask_is_torch_where_bit_for_bit(dtype):
    torch.manual_seed(0)
    x = torch.randn(4, 6, 9).to(dtype)
    mask = x > 0.3
    factor = float_mask(mask, x)
    assert factor.dtype == dtype and set(factor.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(x.relu() * factor, torch.where(mask, x.relu(), 0.0))
    assert torch.equal(factor, mask.to(dtype))
    assert not torch.equal(x.relu() * float_mask(~mask, x), torch.where(mask, x.relu(), 0.0))


def test_a_strided_mask_keeps_its_layout():
    mask = (torch.arange(12).view(3, 4) % 3 == 0).mT  # not contiguous
    assert torch.equal(float_mask(mask, torch.zeros(())), mask.float())


@pytest.mark.filterwarnings("ignore:.torch.jit.trace. is deprecated:FutureWarning")  # fvcore traces with it
def test_it_can_be_traced_as_fvcore_traces_a_model():
    """The FLOP count traces the variants with torch.jit, which cannot take a view to another
    dtype: the traced mask is the plain conversion, with the same values."""
    x = torch.randn(5, 7)
    traced = torch.jit.trace(lambda v: v * float_mask(v > 0, v), (x,))
    assert torch.equal(traced(x), x.relu())


def test_numpy_takes_float32_and_float64_on_the_cpu_sharing_memory():
    values = torch.randn(3, 4, requires_grad=True)
    array = numpy_array(values)
    assert array is not None and array.dtype == "float32"
    with torch.no_grad():
        values[0, 0] = 7.0
    assert array[0, 0] == 7.0  # a view, not a copy
    assert numpy_array(values.double()) is not None
    assert numpy_array(values.bfloat16()) is None and numpy_array(values.half()) is None
