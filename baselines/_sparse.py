"""Row-sparse codes: decode a k-sparse code matrix by gathering its k atoms per row.

TopK and MP codes have k non-zeros among n_latents per row. The contract hands `decode` a dense
(B, n_latents) matrix, whose product with the dictionary costs B·n_latents·d multiply-adds and as
much again twice in the backward pass. The variant that built the codes knows their support, so
it attaches it to the codes tensor (`row_sparse_codes`); `decode_rows` then sums the k chosen
atoms of each row (`embedding_bag`, B·k·d, and the same in the backward pass). Any other codes
(edited, averaged, built by a task) carry no support and take the dense product, so results do
not depend on where the codes came from (up to float summation order).

A stacked model (benchmark/training/stacking.py) has codes (M, B, n_latents) and a dictionary
(M, n_latents, d): model m's rows are gathered from the flattened (M·n_latents, d) dictionary
at its indices shifted by m·n_latents (`stacked_rows`), still one `embedding_bag` for all models.
"""
import torch
from torch.nn import functional as F

# The gather reads memory where the dense product streams it, so it only pays off when the codes
# are sparse enough: measured on a 2-core CPU (`python -m benchmark perf`), the two break even
# near n_latents = 8·k and the gather is ~2-4x faster from 32·k on.
SPARSE_DECODE_MIN_RATIO = 16


def row_sparse_codes(indices: torch.Tensor, values: torch.Tensor, n_latents: int) -> torch.Tensor:
    """Dense (..., B, n_latents) codes with values[..., b, j] added at column indices[..., b, j]
    (a repeated index accumulates), carrying that support for `decode_rows`."""
    codes = values.new_zeros(*values.shape[:-1], n_latents).scatter_add_(-1, indices, values)  # no copy
    codes.row_support = (indices, values, codes._version)
    return codes


def row_support(codes: torch.Tensor):
    """(indices, values) of codes built by `row_sparse_codes` and not modified in place since;
    None for any other tensor (an out-of-place result of codes never inherits the attribute)."""
    support = getattr(codes, "row_support", None)
    if support is None or support[2] != codes._version:
        return None
    return support[0], support[1]


def flat_rows(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A stacked table (M, R, ...) as one table (M·R, ...), with the offsets m·R (M, 1) that
    turn model m's row indices (M, B) into indices of it; an unstacked table (R, ...) as it is,
    with no offsets."""
    if table.dim() < 3:
        return table, None
    n_rows = table.shape[1]
    offsets = torch.arange(0, table.shape[0] * n_rows, n_rows, device=table.device)
    return table.flatten(0, 1), offsets.unsqueeze(1)


def stacked_rows(table: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`flat_rows`'s table, and row indices (M, B, ...) of each model's own table turned into
    indices of it (unstacked: both as they are)."""
    table, offsets = flat_rows(table)
    if offsets is None:
        return table, indices
    return table, indices + offsets.view(-1, *[1] * (indices.dim() - 1))


def decode_rows(codes: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """codes @ weight, (B, K) @ (K, d) or per model (M, B, K) @ (M, K, d), by gathering the rows
    of `weight` in the codes' support when it is known and sparse enough. A traced call (fvcore's
    FLOP count) always takes the dense product, so the reported FLOPs stay those of the plain
    formula."""
    support = row_support(codes)
    if support is None or torch.jit.is_tracing():
        return codes @ weight
    indices, values = support
    if codes.shape[-1] < SPARSE_DECODE_MIN_RATIO * indices.shape[-1]:
        return codes @ weight
    table, rows = stacked_rows(weight, indices)
    bags = F.embedding_bag(rows.flatten(0, -2), table, per_sample_weights=values.flatten(0, -2), mode="sum")
    return bags if codes.dim() == 2 else bags.unflatten(0, codes.shape[:-1])  # (M, B, d) on a stack
