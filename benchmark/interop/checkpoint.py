"""A trained SAE read from another library's files, evaluated without training.

Every supported format reduces to one form (the format modules say how their fields map onto it):

    pre   = (x - b_dec·[center]) @ W_enc + b_enc      W_enc (d_in, d_sae), center: a flag
    codes = activation(pre)                           relu | topk | abstopk | jumprelu | groupmax | gated
    codes = pursuit(x - b_dec·[center], W_dec)        matching pursuit (SAELens' tied MP SAE)
    x_hat = codes @ W_dec + b_dec                     W_dec (d_sae, d_in)

Where a format rescales activations by the decoder norms (SAELens' `rescale_acts_by_decoder_norm`)
the loader folds the norms into W_enc, b_enc and W_dec, as SAELens does when it saves an
inference model: the codes and reconstructions are the same up to float rounding.

Every checkpoint is read as float32, like every dataset. One saved in a half-precision dtype
(bfloat16 or float16, e.g. SAELens' cfg `dtype`) has its weights upcast exactly, but its own
library would compute in that dtype: the loader measures how far that forward is from ours
(`half_precision_gap`, on probe inputs) and `describe` reports it (`eval` prints it), so a reader
knows what reading it as float32 changes.
"""
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.variant import SAE

from baselines._cpu import float_mask
from baselines._sparse import decode_rows, row_sparse_codes
from baselines.topk import keep_topk

ACTIVATIONS = ("relu", "topk", "abstopk", "jumprelu", "groupmax", "gated", "pursuit")
N_PROBES, PROBE_LATENTS = 8, 8  # the half-precision comparison: probe inputs, latents in each


@dataclass
class LinearCheckpoint:
    format: str  # "SAELens", "sparsify", "dictionary_learning"
    architecture: str  # the format's own name, e.g. "topk" or "AutoEncoderTopK"
    directory: Path
    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor
    center: bool  # subtract b_dec from x before encoding (every format's input bias is b_dec or none)
    activation: str
    k: int | None = None  # topk, abstopk, groupmax
    threshold: torch.Tensor | None = None  # jumprelu: codes where pre > threshold (per latent, or one scalar)
    gate: dict[str, torch.Tensor] = field(default_factory=dict)  # gated: gate_bias, r_mag, mag_bias
    # pursuit: residual_threshold, max_iterations (None: d_in), stop_on_duplicate_support
    pursuit: dict = field(default_factory=dict)
    stored_dtype: torch.dtype = torch.float32  # the file's (its least precise float tensor's)
    half_precision_gap: float | None = None  # set on load when stored_dtype is coarser than float32

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}")
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
            value = getattr(self, name)
            if value is not None:  # float32 like every dataset; contiguous like a trained weight
                setattr(self, name, value.detach().to(torch.float32).contiguous())
        if self.threshold is not None and self.threshold.dim() and bool((self.threshold == self.threshold[0]).all()):
            self.threshold = self.threshold[0].clone()  # one threshold for all latents is one number
        self.gate = {n: v.detach().to(torch.float32).contiguous() for n, v in self.gate.items()}
        if is_half_precision(self.stored_dtype):
            self.half_precision_gap = half_precision_gap(self)

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {n: getattr(self, n) for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return dict(out, **self.gate)

    def describe(self) -> str:
        extra = f", k={self.k}" if self.k is not None else ""
        text = f"{self.format} {self.architecture} ({self.activation}{extra}), d_in {self.d_in}, d_sae {self.d_sae}"
        if self.half_precision_gap is None:
            return text
        dtype = str(self.stored_dtype).removeprefix("torch.")
        return (f"{text}; stored as {dtype}, read as float32: a {dtype} forward differs from it by up to "
                f"{self.half_precision_gap:.2%} of the largest |x̂| on {N_PROBES} probe inputs")


class CheckpointSAE(SAE):
    """A loaded checkpoint as a variant: the runner builds it and evaluates it, never trains it.
    Subclasses made by `checkpoint_class` carry `checkpoint` and `name`."""

    trainable = False
    checkpoint: LinearCheckpoint | None = None
    name = "checkpoint"

    def __init__(self, input_shape, n_latents, checkpoint: LinearCheckpoint | None = None):
        super().__init__(input_shape, n_latents)
        ckpt = checkpoint or self.checkpoint
        if self.input_dim != ckpt.d_in:
            raise ValueError(f"{self.name} takes inputs of {ckpt.d_in} values; got input shape {self.input_shape}")
        if self.n_latents != ckpt.d_sae:
            raise ValueError(f"{self.name} has {ckpt.d_sae} latents; asked for {self.n_latents}")
        self.activation, self.k, self.center = ckpt.activation, ckpt.k, ckpt.center
        self.pursuit = dict(ckpt.pursuit)
        tied = ("W_enc", "b_enc") if self.activation == "pursuit" else ()  # its encoder is W_dec itself
        for name, value in ckpt.tensors().items():  # parameters that nothing trains
            if name in tied:
                continue
            setattr(self, name, nn.Parameter(value.clone(), requires_grad=False))

    @classmethod
    def configure(cls, dataset, n_latents: int, hparams: dict) -> tuple[int, dict]:
        """The width is the checkpoint's, whatever the preset says; its input dimension must be the
        dataset's."""
        check_input_dim(cls.checkpoint, cls.name, dataset.name, dataset.input_shape)
        if hparams:
            raise UserError(f"{cls.name} is a trained checkpoint: it takes no hyperparameters "
                            f"(got {', '.join(sorted(hparams))})")
        return cls.checkpoint.d_sae, {}

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return ((x - self.b_dec) if self.center else x) @ self.W_enc + self.b_enc

    def encode(self, x):
        if self.activation == "pursuit":
            x = x.flatten(1)
            return matching_pursuit((x - self.b_dec) if self.center else x, self.W_dec, **self.pursuit)
        pre = self.pre_activation(x)
        if self.activation == "relu":
            return pre.relu()
        if self.activation == "topk":
            return keep_topk(pre, min(self.k, self.n_latents))
        if self.activation == "jumprelu":
            return pre.relu() * float_mask(pre > self.threshold, pre)
        if self.activation == "abstopk":  # the k largest |pre|, signed, no ReLU (SAELens' AbsTopK)
            index = pre.abs().topk(min(self.k, self.n_latents), dim=-1).indices
            return row_sparse_codes(index, pre.gather(-1, index), self.n_latents)
        if self.activation == "groupmax":  # the largest ReLU'd value of each of k equal groups
            values, index = pre.relu().unflatten(-1, (self.k, -1)).max(dim=-1)
            offsets = torch.arange(0, self.n_latents, self.n_latents // self.k, device=pre.device)
            return row_sparse_codes(index + offsets, values, self.n_latents)
        # gated: a gate on pre + gate_bias, a magnitude exp(r_mag)·pre + mag_bias (b_enc is zero)
        gate = (pre + self.gate_bias > 0).to(pre.dtype)
        return gate * (self.r_mag.exp() * pre + self.mag_bias).relu()

    def decode(self, codes):
        return (decode_rows(codes, self.W_dec) + self.b_dec).view(-1, *self.input_shape)

    @torch.no_grad()
    def atoms(self) -> torch.Tensor:
        return self.W_dec.detach().reshape(self.n_latents, *self.input_shape).clone()

    def fit(self, x) -> None:
        """Nothing to fit: the weights are the checkpoint's."""

    def loss(self, x, x_hat, codes):
        raise RuntimeError(f"{self.name} is a trained checkpoint: it is evaluated, never trained")


def is_half_precision(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point and torch.finfo(dtype).eps > torch.finfo(torch.float32).eps


def probe_inputs(ckpt: LinearCheckpoint, n: int = N_PROBES) -> torch.Tensor:
    """n inputs the checkpoint's own decoder makes from random codes of PROBE_LATENTS latents (values
    in [1, 2), times the median threshold where it has one, so that its latents can fire): inputs of
    its scale and directions, whatever data it was trained on. Seeded: the same for every load."""
    g = torch.Generator().manual_seed(0)
    latents = torch.rand(n, ckpt.d_sae, generator=g).topk(min(PROBE_LATENTS, ckpt.d_sae), dim=1).indices
    scale = 1.0 if ckpt.threshold is None else max(1.0, float(ckpt.threshold.median()))
    values = (1 + torch.rand(latents.shape, generator=g)) * scale
    return torch.zeros(n, ckpt.d_sae).scatter_(1, latents, values) @ ckpt.W_dec + ckpt.b_dec


@torch.no_grad()
def half_precision_gap(ckpt: LinearCheckpoint) -> float:
    """max |x̂_half - x̂| / max |x̂| on the probe inputs: x̂ our float32 forward, x̂_half the same
    forward computed in the dtype the checkpoint was stored in (as its library would run it)."""
    model = CheckpointSAE((ckpt.d_in,), ckpt.d_sae, checkpoint=ckpt).eval()
    x = probe_inputs(ckpt)
    ours = model.decode(model.encode(x))
    model.to(ckpt.stored_dtype)
    half = model.decode(model.encode(x.to(ckpt.stored_dtype))).float()
    return float((half - ours).abs().max() / ours.abs().max().clamp_min(torch.finfo(torch.float32).tiny))


def matching_pursuit(residual: torch.Tensor, W_dec: torch.Tensor, residual_threshold: float = 1e-2,
                     max_iterations: int | None = None, stop_on_duplicate_support: bool = True) -> torch.Tensor:
    """SAELens' matching-pursuit encoding (MatchingPursuitSAE.encode): at each step every row
    takes the atom of largest ReLU(residual · atom), adds ReLU(residual · atom) to its code and
    removes that from its residual; a row stops when its support did not change
    (`stop_on_duplicate_support`) or its residual norm fell below `residual_threshold` (> 0);
    at most `max_iterations` steps (None: d_in)."""
    residual = residual.clone()
    n, (d_sae, d_in) = residual.shape[0], W_dec.shape
    codes = residual.new_zeros(n, d_sae)
    previous = torch.zeros(n, d_sae, dtype=torch.bool, device=residual.device)
    done = torch.zeros(n, dtype=torch.bool, device=residual.device)
    for _ in range(d_in if max_iterations is None else max_iterations):
        index = (residual @ W_dec.T).relu().max(dim=1, keepdim=True).indices
        atom = W_dec[index.squeeze(1)]
        value = (residual * atom).sum(-1, keepdim=True).relu() * (~done).unsqueeze(1).to(residual.dtype)
        codes.scatter_add_(1, index, value)
        residual = residual - value * atom
        if stop_on_duplicate_support:
            support = codes != 0
            done = done | (support == previous).all(dim=1)
            previous = support
        if residual_threshold > 0:
            done = done | (residual.norm(dim=-1) < residual_threshold)
        if done.all():
            break
    return codes


class CheckpointFamilySAE(CheckpointSAE):
    """Checkpoints of one format, architecture and width read as one variant whose settings are
    its members (`member=<folder>`): their L0s make a sweep, read at the target L0s like a
    suite variant's. Subclasses made by `checkpoint_class` carry `members` and `name`."""

    members: dict[str, LinearCheckpoint] = {}

    def __init__(self, input_shape, n_latents, member: str):
        super().__init__(input_shape, n_latents, self.members[member])

    @classmethod
    def family_settings(cls) -> dict[str, dict]:
        from benchmark.config import setting_label

        return {setting_label({"member": label}): {"member": label} for label in cls.members}

    @classmethod
    def configure(cls, dataset, n_latents: int, hparams: dict) -> tuple[int, dict]:
        member = hparams.get("member")
        if set(hparams) != {"member"} or member not in cls.members:
            raise UserError(f"{cls.name} takes one hyperparameter, member (one of {', '.join(cls.members)}); "
                            f"got {hparams}")
        ckpt = cls.members[member]
        check_input_dim(ckpt, f"{cls.name} member {member}", dataset.name, dataset.input_shape)
        return ckpt.d_sae, {"member": member}


def check_input_dim(ckpt: LinearCheckpoint, name: str, dataset_name: str, input_shape) -> None:
    d = math.prod(input_shape)
    if d != ckpt.d_in:
        raise UserError(f"{name}: the checkpoint's d_in is {ckpt.d_in} but dataset {dataset_name} has "
                        f"{d} values per sample (shape {list(input_shape)}); evaluate it on a dataset of "
                        f"dimension {ckpt.d_in}")
