"""Row-sparse codes: decode a k-sparse code matrix by gathering its k atoms per row.

TopK and MP codes have k non-zeros among n_latents per row. The contract hands `decode` a dense
(B, n_latents) matrix, whose product with the dictionary costs B·n_latents·d multiply-adds and as
much again twice in the backward pass. The variant that built the codes knows their support, so
it attaches it to the codes tensor (`row_sparse_codes`); `decode_rows` then sums the k chosen
atoms of each row (`embedding_bag`, B·k·d, and the same in the backward pass). Any other codes
(edited, averaged, built by a task) carry no support and take the dense product, so results do
not depend on where the codes came from (up to float summation order).
"""
import torch
from torch.nn import functional as F

# The gather reads memory where the dense product streams it, so it only pays off when the codes
# are sparse enough: measured on a 2-core CPU (`python -m benchmark perf`), the two break even
# near n_latents = 8·k and the gather is ~2-4x faster from 32·k on.
SPARSE_DECODE_MIN_RATIO = 16


def row_sparse_codes(indices: torch.Tensor, values: torch.Tensor, n_latents: int) -> torch.Tensor:
    """Dense (B, n_latents) codes with values[b, j] added at column indices[b, j] (a repeated
    index accumulates), carrying that support for `decode_rows`."""
    codes = values.new_zeros(values.shape[0], n_latents).scatter_add_(1, indices, values)  # no copy
    codes.row_support = (indices, values, codes._version)
    return codes


def row_support(codes: torch.Tensor):
    """(indices, values) of codes built by `row_sparse_codes` and not modified in place since;
    None for any other tensor (an out-of-place result of codes never inherits the attribute)."""
    support = getattr(codes, "row_support", None)
    if support is None or support[2] != codes._version:
        return None
    return support[0], support[1]


def decode_rows(codes: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """codes @ weight, by gathering the rows of `weight` in the codes' support when it is known
    and sparse enough. A traced call (fvcore's FLOP count) always takes the dense product, so the
    reported FLOPs stay those of the plain formula."""
    support = row_support(codes)
    if support is None or torch.jit.is_tracing():
        return codes @ weight
    indices, values = support
    if codes.shape[1] < SPARSE_DECODE_MIN_RATIO * indices.shape[1]:
        return codes @ weight
    return F.embedding_bag(indices, weight, per_sample_weights=values, mode="sum")
