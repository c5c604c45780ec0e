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
import torch

from benchmark.registry import VARIANTS

from baselines._stacked import below, largest, per_model
from baselines.topk import TopKSAE, keep_topk


def keep_batch_topk(pre: torch.Tensor, k, ranked=None) -> torch.Tensor:
    """ReLU of the k·B largest entries of the whole (B, n) batch, zeros elsewhere. A stack's
    per-model k (M,), for pre (M, B, n): each model keeps the k·B largest of its own batch (the
    largest k's, sorted, with those past its own k·B zeroed). `ranked`: a sorted topk (values,
    indices) of at least that many entries of the flattened batch, reused instead of ranking
    again (training ranks max_k·B entries for the thresholds anyway)."""
    flat = pre.flatten(-2)
    batch = pre.shape[-2]
    count = largest(k) * batch
    values, indices = ranked if ranked is not None else flat.topk(count, dim=-1)
    values, indices = values[..., :count].relu(), indices[..., :count]
    own = below(k * batch, values)
    if own is not None:
        values = values * own
    return torch.zeros_like(flat).scatter(-1, indices, values).view_as(pre)


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
            # One ranking serves both: max_k >= k, so its first k·B entries are the selection.
            ranked = activations.flatten(-2).topk(self.max_k * activations.shape[-2], dim=-1)
            self.update_thresholds(ranked.values.detach())
            return keep_batch_topk(activations, self.k, ranked)
        if not bool(self.calibrated):  # never trained: a batch of one, i.e. per-sample TopK
            return keep_topk(pre, self.k)
        threshold = self.thresholds[self.k - 1]
        return torch.where(activations > threshold, activations, torch.zeros_like(activations))
