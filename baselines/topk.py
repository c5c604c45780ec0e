"""TopK SAE (Gao et al. 2024): keep the k largest pre-activations, plus the AuxK loss that
makes dead latents model the residual error."""
import torch

from benchmark.registry import VARIANTS

from baselines._linear import LinearSAE, squared_error
from baselines._sparse import decode_rows, row_sparse_codes


def keep_topk(pre: torch.Tensor, k: int) -> torch.Tensor:
    """ReLU of the k largest entries of each row, zeros elsewhere (carrying that support, so
    that decoding gathers k atoms per row instead of multiplying by all of them)."""
    values, indices = pre.topk(k, dim=1)
    return row_sparse_codes(indices, values.relu(), pre.shape[1])


@VARIANTS.register("topk")
class TopKSAE(LinearSAE):
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
        return keep_topk(pre, min(self.k, pre.shape[1]))  # k may be raised past K at inference

    def encode(self, x):
        pre = self.pre_activation(x)
        codes = self.select(pre)
        if self.training:
            self._pre = pre
            fired = (codes > 0).any(0)
            self.steps_since_fired.add_(1).masked_fill_(fired, 0)
        return codes

    def aux_loss(self, x, x_hat):
        pre, self._pre = self._pre, None  # used once: keep no autograd graph past the step
        dead = self.steps_since_fired >= self.dead_steps
        if pre is None or not bool(dead.any()):
            return x_hat.new_zeros(())
        residual = (x - x_hat).detach().flatten(1)
        k = min(self.aux_k, int(dead.sum()))
        dead_pre = pre.masked_fill(~dead, float("-inf"))
        residual_hat = decode_rows(keep_topk(dead_pre, k), self.W_dec)
        return (residual - residual_hat).pow(2).sum(1).mean()

    def loss(self, x, x_hat, codes):
        mse = squared_error(x, x_hat)
        aux = self.aux_loss(x, x_hat) if self.training else mse.new_zeros(())
        return mse + self.aux_coeff * aux, {"mse": mse.detach(), "aux": aux.detach()}
