"""BatchTopK SAE (Bussmann, Leask & Nanda 2024): keep the k·B largest activations of the whole
training batch, so that the number of codes per sample varies while averaging k.

At inference a sample must be encoded on its own, so eval mode replaces the batch selection by a
threshold: latents fire where their activation exceeds θ. θ is a running estimate (an EMA over
training batches) of the smallest activation the batch selection kept.

Adaptive sparsity (`set_inference_k`): we keep the running estimate not for one k but for every
j = 1..max_k (max_k = max_k_factor·k): thresholds[j-1] estimates the (j·B)-th largest activation
of a training batch, i.e. the threshold that lets through j codes per sample on average. Eval
mode with inference k uses thresholds[k-1]; at the trained k this is the usual BatchTopK
threshold, and for other k it is the threshold the same rule would have learned for that k.
"""
import numpy as np
import torch

from benchmark.registry import VARIANTS

from baselines._cpu import float_mask, numpy_array
from baselines._stacked import below, largest, per_model
from baselines.topk import TopKSAE, keep_topk


def ranked_values(flat: torch.Tensor, count: int) -> torch.Tensor:
    """The `count` largest entries of each row of `flat` (..., n), sorted from the largest, as
    values without gradient. On the CPU numpy sorts the whole row with its vectorised sort, 4-5x
    faster than torch.topk(count) at training sizes (a stack of 20 models of batch 256 and 256
    latents, count 48·256: 9 against 41 ms on one core); elsewhere torch.topk."""
    array = numpy_array(flat)
    if array is None:
        return flat.detach().topk(count, dim=-1).values
    ascending = np.sort(array, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(ascending[..., : -count - 1 : -1]))


def keep_batch_topk(pre: torch.Tensor, k, ranked: torch.Tensor | None = None) -> torch.Tensor:
    """ReLU of the k·B largest entries of the whole (B, n) batch, zeros elsewhere. A stack's
    per-model k (M,), for pre (M, B, n): each model keeps its own batch's k·B largest. `ranked`:
    `ranked_values` of the flattened batch (at least k·B entries), reused instead of ranking again
    (training ranks max_k·B entries for the thresholds anyway).

    The k·B-th largest value is the threshold: every entry at or above it is kept. More than k·B
    such entries means positive entries tie at it across the cut, and which of them is kept is
    torch.topk's choice, so that case takes torch.topk over as many entries as `ranked` holds, as
    this function always did: the codes are the same as ranking with torch.topk, bit for bit."""
    flat = pre.flatten(-2)
    batch = pre.shape[-2]
    if ranked is None:
        ranked = ranked_values(flat, largest(k) * batch)
    threshold = kth_largest(ranked, k, batch)
    kept = float_mask(flat >= threshold, flat)
    # A count of 0/1 values summed in float32: exact for rows under 2^24 entries (in bfloat16 it
    # would not be past 256).
    count = kept.sum(-1, keepdim=True, dtype=torch.float32)
    straddled = (count > per_model(k, threshold) * batch) & (threshold > 0)
    if bool(straddled.any()):
        return topk_selection(flat, k, batch, ranked.shape[-1]).view_as(pre)
    return (flat.relu() * kept).view_as(pre)


def kth_largest(ranked: torch.Tensor, k, batch: int) -> torch.Tensor:
    """(..., 1): the (k·B)-th largest value of each row of `ranked`, per model on a stack."""
    if isinstance(k, torch.Tensor) and k.dim() == 1:
        return ranked.gather(-1, (per_model(k, ranked) * batch - 1).long())
    last = int(k) * batch - 1
    return ranked[..., last : last + 1]


def topk_selection(flat: torch.Tensor, k, batch: int, count: int) -> torch.Tensor:
    """The k·B largest of each row by torch.topk of `count` (>= k·B) entries: its first k·B
    (per model on a stack, those past a model's own k·B zeroed), scattered back."""
    values, indices = flat.topk(count, dim=-1)
    kept = largest(k) * batch
    values, indices = values[..., :kept].relu(), indices[..., :kept]
    own = below(k * batch, values)
    if own is not None:
        values = values * own
    return torch.zeros_like(flat).scatter(-1, indices, values)


@VARIANTS.register("batchtopk")
class BatchTopKSAE(TopKSAE):
    def __init__(self, input_shape, n_latents, k: int = 32, aux_k: int = 256,
                 aux_coeff: float = 1 / 32, dead_steps: int = 200, threshold_decay: float = 0.95,
                 max_k_factor: int = 4):
        super().__init__(input_shape, n_latents, k=k, aux_k=aux_k, aux_coeff=aux_coeff,
                         dead_steps=dead_steps)
        self.threshold_decay = threshold_decay
        # thresholds[j-1]: EMA of the (j·B)-th largest activation of a training batch.
        self.register_buffer("thresholds", torch.zeros(min(max_k_factor * k, n_latents)))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))

    @property
    def max_k(self) -> int:
        return self.thresholds.shape[-1]  # on a stack, the largest model's (the others' padded)

    def set_inference_k(self, k: int) -> None:
        if not 1 <= k <= self.max_k:
            raise ValueError(f"batchtopk calibrated thresholds for k in 1..{self.max_k}, got {k}")
        self.k = int(k)

    @torch.no_grad()
    def update_thresholds(self, ranked: torch.Tensor) -> None:
        """`ranked`: the batch's max_k·B largest activations, sorted (per model on a stack:
        (M, max_k·B), thresholds (M, max_k)); a model's entries past its own max_k (padding, cut
        off by `unstack`) are updated too and never read."""
        batch = ranked.shape[-1] // self.max_k
        observed = ranked[..., batch - 1 :: batch]  # the (j·B)-th largest, j = 1..max_k
        if bool(self.calibrated.all()):
            self.thresholds.lerp_(observed, 1 - self.threshold_decay)
        else:  # the first batch seeds the estimate instead of averaging with zeros (per model)
            averaged = self.thresholds.lerp(observed, 1 - self.threshold_decay)
            self.thresholds.copy_(torch.where(per_model(self.calibrated, observed), averaged, observed))
            self.calibrated.fill_(True)

    def select(self, pre: torch.Tensor) -> torch.Tensor:
        activations = pre.relu()
        if self.training:
            # One ranking serves both: max_k >= k, so it holds the k·B-th value the selection keeps from.
            ranked = ranked_values(activations.flatten(-2), self.max_k * activations.shape[-2])
            self.update_thresholds(ranked)
            return keep_batch_topk(activations, self.k, ranked)
        if not bool(self.calibrated):  # never trained: a batch of one, i.e. per-sample TopK
            return keep_topk(pre, self.k)
        threshold = self.thresholds[self.k - 1]
        return activations * float_mask(activations > threshold, activations)
