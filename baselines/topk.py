"""TopK SAE (Gao et al. 2024): keep the k largest pre-activations, plus the AuxK loss that
makes dead latents model the residual error."""
import torch

from benchmark.registry import VARIANTS

from baselines._linear import LinearSAE, over_batch
from baselines._sparse import decode_rows, row_sparse_codes
from baselines._stacked import below, largest


def keep_topk(pre: torch.Tensor, k) -> torch.Tensor:
    """ReLU of the k largest entries of each row, zeros elsewhere (carrying that support, so
    that decoding gathers k atoms per row instead of multiplying by all of them). k may exceed
    the row length (all are kept). A stack's per-model k (M,), for pre (M, B, n): every model
    takes the largest k's entries, sorted, and zeroes those past its own k."""
    values, indices = pre.topk(min(largest(k), pre.shape[-1]), dim=-1)
    values = values.relu()
    own = below(k, values)
    if own is not None:
        values = values * own
    return row_sparse_codes(indices, values, pre.shape[-1])


@VARIANTS.register("topk")
class TopKSAE(LinearSAE):
    stackable_hparams = frozenset({"k"})

    def __init__(self, input_shape, n_latents, k: int = 32, aux_k: int = 256,
                 aux_coeff: float = 1 / 32, dead_steps: int = 200):
        super().__init__(input_shape, n_latents)
        self.k = k
        self.aux_k = min(aux_k, n_latents)
        self.aux_coeff = aux_coeff
        self.dead_steps = dead_steps
        # Training steps since each latent last fired: dead latents feed the AuxK loss.
        self.register_buffer("steps_since_fired", torch.zeros(n_latents, dtype=torch.long))
        self._pre = None

    def set_inference_k(self, k: int) -> None:
        self.k = int(k)

    def select(self, pre: torch.Tensor) -> torch.Tensor:
        """Pre-activations -> codes; the hook BatchTopK and Matryoshka override."""
        return keep_topk(pre, self.k)  # k may be raised past K at inference

    def encode(self, x):
        pre = self.pre_activation(x)
        codes = self.select(pre)
        if self.training:
            self._pre = pre
            fired = (codes > 0).any(-2)  # over the batch
            self.steps_since_fired.add_(1).masked_fill_(fired, 0)
        return codes

    def aux_loss(self, x, x_hat):
        pre, self._pre = self._pre, None  # used once: keep no autograd graph past the step
        dead = self.steps_since_fired >= self.dead_steps
        n_dead = dead.sum(-1)  # per model on a stack
        if pre is None or not bool(dead.any()):
            return x_hat.new_zeros(n_dead.shape)
        residual = self.features(x - x_hat).detach()
        k = n_dead.clamp_max(self.aux_k)  # each model's own: 0 for a model of a stack with none
        # -inf on the live latents, added rather than filled in (masked_fill is slow on a CPU)
        live = torch.zeros(dead.shape, dtype=pre.dtype, device=pre.device).masked_fill_(~dead, float("-inf"))
        dead_pre = pre + over_batch(live)
        residual_hat = decode_rows(keep_topk(dead_pre, k), self.W_dec)
        error = (residual - residual_hat).pow(2).sum(-1).mean(-1)
        return error * (n_dead > 0)  # no AuxK loss for a model with no dead latent

    def loss(self, x, x_hat, codes):
        mse = self.squared_error(x, x_hat)
        aux = self.aux_loss(x, x_hat) if self.training else torch.zeros_like(mse)
        return mse + self.aux_coeff * aux, {"mse": mse.detach(), "aux": aux.detach()}
