"""FLOPs of what a function executes, counted by `torch.utils.flop_counter` (forward and backward
as executed, 2 per multiply-add; matrix products, convolutions and our sparse decode,
`embedding_bag`; no element-wise work): shared by `perf` and its stacked comparison."""
import math

import torch
from torch.utils.flop_counter import FlopCounterMode


def _embedding_bag_flops(n_index_arg: int, width_arg: int):
    """FLOP formula for an embedding_bag op: one multiply-add per gathered element."""
    def formula(*args, out_shape=None, **kwargs):
        indices, matrix = args[n_index_arg], args[width_arg]
        return 2 * math.prod(indices) * matrix[-1]
    return formula


SPARSE_FLOP_FORMULAS = {
    torch.ops.aten._embedding_bag: _embedding_bag_flops(1, 0),
    torch.ops.aten._embedding_bag_backward: _embedding_bag_flops(1, 0),
    torch.ops.aten._embedding_bag_per_sample_weights_backward: _embedding_bag_flops(2, 0),
}


def count_flops(fn) -> int:
    """FLOPs (2 per multiply-add) of the matrix products, convolutions and sparse decodes that
    `fn()` executes, backward passes included."""
    with FlopCounterMode(display=False, custom_mapping=SPARSE_FLOP_FORMULAS) as counter:
        fn()
    return counter.get_total_flops()


def gflops(flops: float, seconds: float) -> float:
    return flops / seconds / 1e9
