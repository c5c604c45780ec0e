"""overcomplete's SAE classes as variants: `--variant overcomplete:TopKSAE`.

overcomplete (0.3) SAEs take (input_shape, nb_concepts, ...), `encode` returns (pre_codes, codes)
and `decode` multiplies codes by their dictionary; they are trained by a criterion
f(x, x_hat, pre_codes, codes, dictionary). The adapter gives them our contract: `encode` returns
the codes, `decode` the dictionary's reconstruction, `loss` the overcomplete criterion paired with
the class (below), `atoms()` their dictionary (`get_dictionary()`). Every keyword of the class
(top_k, k, bandwidth, kernel, threshold_momentum, q, dropout, max_iter, delta, use_multiplier,
encoder_module, dictionary_params) is a hyperparameter; the adapter adds three:
- `penalty`: the criterion's coefficient (default: the criterion's own default, below);
- `center` (default true): inputs are centred on the mean training input before the SAE sees
  them and the mean added back after decoding. overcomplete's dictionaries have no decoder bias
  and its docs ask for standardised inputs; without it a bias-free SAE spends atoms on the mean.
- `n_points` (archetypal classes): how many training inputs (a seeded random draw, made in
  `init_from_data`) form the archetypal candidate points C (default: n_latents);
- `tied_init` (default true, default linear encoder only): the encoder starts as the dictionary's
  transpose, with a bias, through overcomplete's own `untied(bias=True, copy_from_dictionary=True)`:
  the TopK paper's initialisation, which our variants use too. Without it overcomplete's encoder
  starts independent of its dictionary and needs many more steps to match it.

Criteria (overcomplete.sae.losses where it has one):
- SAE, QSAE: `mse_l1` (MSE + penalty · mean L1 of the codes; default penalty 1.0).
- TopKSAE, BatchTopKSAE, RATopKSAE: `top_k_auxiliary_loss` (the TopK paper's AuxK; default 0.1).
- JumpSAE, RAJumpSAE: MSE + penalty · mean L0, the L0 counted by overcomplete's `heaviside` (its
  pseudo-gradient reaches the thresholds with the class's own kernel and bandwidth), the
  JumpReLU paper's loss; overcomplete ships no JumpReLU criterion. Default penalty 1e-3.
- MpSAE: the criterion of overcomplete's MP-SAE docs: MSE minus penalty · the mean projection of
  the residual on atoms that did not fire (when more than 10 did not), reviving dead atoms
  (default 1e-2).
- OMPSAE: MSE (its codes are non-negative least squares on the selected atoms; no penalty).
Inputs are flattened, so image datasets train them on vectors. Classes that are not SAEs, and
encoders that need images or token sequences, are refused by name with the reason.
"""
import hashlib
import importlib.metadata
from pathlib import Path

import torch

from benchmark.errors import UserError
from benchmark.perf.peers import load_overcomplete
from benchmark.variant import SAE

PREFIX = "overcomplete:"
TOPK_CLASSES = ("TopKSAE", "BatchTopKSAE", "RATopKSAE")
JUMP_CLASSES = ("JumpSAE", "RAJumpSAE")
ARCHETYPAL = ("RATopKSAE", "RAJumpSAE")
IDENTITY_ENCODERS = ("MpSAE", "OMPSAE")  # their codes come from pursuit over the dictionary
CRITERIA = {  # class -> (criterion, default penalty)
    "SAE": ("mse_l1", 1.0), "QSAE": ("mse_l1", 1.0),
    **{c: ("top_k_auxiliary_loss", 0.1) for c in TOPK_CLASSES},
    **{c: ("mse + L0 (heaviside)", 1e-3) for c in JUMP_CLASSES},
    "MpSAE": ("mse - revive dead atoms (MP-SAE docs)", 1e-2),
    "OMPSAE": ("mse", 0.0),
}
# Encoders of overcomplete's factory that do not take a flat vector.
NON_VECTOR_ENCODERS = ("resnet", "attention")


def overcomplete_sae():
    """overcomplete.sae (with matplotlib's removed get_cmap restored by benchmark.perf.peers), or a
    UserError saying how to install it."""
    module = load_overcomplete()
    if module is None:
        raise UserError("overcomplete:CLASS needs the overcomplete package: pip install 'sae-benchmark[peers]' "
                        "(or pip install overcomplete==0.3.0)")
    return module


def refusal(name: str, module) -> str | None:
    """Why overcomplete's `name` cannot be a variant, or None if it can."""
    obj = getattr(module, name, None)
    if obj is None:
        import overcomplete

        if hasattr(overcomplete, name):
            return (f"overcomplete.{name} is not an SAE trained by gradient steps (it is fitted by its own "
                    "fit(), or is a model or helper); the SAE classes are listed by `list --foreign`")
        return f"overcomplete.sae has no class {name!r}; the SAE classes are listed by `list --foreign`"
    if not (isinstance(obj, type) and issubclass(obj, module.SAE)):
        return (f"overcomplete.sae.{name} is not an SAE class (an encoder, dictionary, loss or helper); the SAE "
                "classes are listed by `list --foreign`")
    if name not in CRITERIA:
        return f"overcomplete.sae.{name} has no criterion paired with it in this adapter (benchmark/interop/overcomplete.py)"
    return None


def sae_classes(module) -> list[str]:
    return sorted(n for n, obj in vars(module).items() if isinstance(obj, type) and issubclass(obj, module.SAE))


def foreign_listing() -> list[tuple[str, str]]:
    """(spec, what it is or why it is refused) for every SAE class overcomplete exports."""
    module = load_overcomplete()
    if module is None:
        return [("overcomplete:*", "overcomplete is not installed: pip install 'sae-benchmark[peers]'")]
    rows = []
    for name in sae_classes(module):
        why = refusal(name, module)
        if why:
            rows.append((PREFIX + name, f"refused: {why}"))
        else:
            criterion, penalty = CRITERIA[name]
            rows.append((PREFIX + name, f"criterion {criterion}" + (f", penalty {penalty:g}" if penalty else "")))
    return rows


def source_hash() -> str:
    """overcomplete's version and this adapter's source: part of the model identity."""
    version = importlib.metadata.version("overcomplete")
    return hashlib.sha256(version.encode() + Path(__file__).read_bytes()).hexdigest()[:16]


_classes: dict[str, type] = {}


def overcomplete_variant(name: str) -> type:
    """The variant class adapting overcomplete.sae.`name` (a UserError if it cannot be adapted)."""
    module = overcomplete_sae()
    why = refusal(name, module)
    if why:
        raise UserError(f"{PREFIX}{name}: {why}")
    if name not in _classes:
        _classes[name] = type(name, (OvercompleteSAE,), {
            "overcomplete_class": getattr(module, name), "name": PREFIX + name,
            "__doc__": f"overcomplete.sae.{name} (criterion {CRITERIA[name][0]})"})
    return _classes[name]


class OvercompleteSAE(SAE):
    overcomplete_class: type = None
    name = "overcomplete"

    def __init__(self, input_shape, n_latents, penalty: float | None = None, center: bool = True,
                 n_points: int | None = None, tied_init: bool = True, **their_hparams):
        super().__init__(input_shape, n_latents)
        cls_name = self.overcomplete_class.__name__
        encoder = their_hparams.get("encoder_module")
        if isinstance(encoder, str) and encoder.startswith(NON_VECTOR_ENCODERS):
            raise ValueError(f"encoder_module {encoder!r} needs images or token sequences; the adapter trains on "
                             "flat vectors (use linear, mlp_ln_*, mlp_bn_* or identity)")
        if cls_name in ARCHETYPAL:  # candidate points: placeholders until init_from_data draws real ones
            their_hparams["points"] = torch.zeros(int(n_points or n_latents), self.input_dim)
        self.sae = self.overcomplete_class(self.input_dim, n_latents, **their_hparams)
        if tied_init and their_hparams.get("encoder_module") is None and cls_name not in IDENTITY_ENCODERS:
            # overcomplete's own re-initialisation: a linear encoder (with bias) starting as the
            # dictionary's transpose, the TopK paper's initialisation (and our variants')
            self.sae.untied(bias=True, copy_from_dictionary=True)
        self.criterion, default_penalty = CRITERIA[cls_name]
        self.penalty = float(default_penalty if penalty is None else penalty)
        self.center = bool(center)
        self.register_buffer("mean", torch.zeros(self.input_dim))
        # BatchTopKSAE keeps its inference threshold in a plain attribute, which state_dict (and so
        # the model cache) would lose: a buffer holds a copy (NaN: not estimated yet).
        self.register_buffer("running_threshold", torch.tensor(float("nan")))
        self._pre = None  # pre-codes of the last training encode, for the criterion

    # ----- overcomplete keeps a `device` attribute and builds tensors on it -----
    def _follow_device(self, device: torch.device) -> None:
        for module in self.sae.modules():
            if hasattr(module, "device") and not isinstance(getattr(type(module), "device", None), property):
                module.device = device

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return flat - self.mean if self.center else flat

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        flat = x.flatten(1)
        if self.center:
            self.mean.copy_(flat.mean(0))
        if self.overcomplete_class.__name__ in ARCHETYPAL:
            candidates = self.sae.dictionary.C
            pick = torch.randperm(flat.shape[0])[: candidates.shape[0]].to(flat.device)
            chosen = self._input(flat[pick])
            candidates.zero_()[: chosen.shape[0]].copy_(chosen)

    def encode(self, x):
        self._follow_device(x.device)
        keeps_threshold = hasattr(self.sae, "running_threshold")
        if keeps_threshold and not self.training and torch.isfinite(self.running_threshold):
            self.sae.running_threshold = self.running_threshold
        pre_codes, codes = self.sae.encode(self._input(x))
        if self.training:
            self._pre = pre_codes
            if keeps_threshold:
                self.running_threshold.copy_(self.sae.running_threshold)
        return codes

    def decode(self, codes):
        x_hat = self.sae.decode(codes)
        return (x_hat + self.mean if self.center else x_hat).view(-1, *self.input_shape)

    def loss(self, x, x_hat, codes):
        x, x_hat = self._input(x), self._input(x_hat)  # the centring cancels in x - x_hat
        pre, self._pre = self._pre, None  # used once: no autograd graph kept past the step
        if pre is None:
            pre, _ = self.sae.encode(x)
        dictionary = self.sae.get_dictionary()
        mse = (x - x_hat).square().mean()
        cls_name = self.overcomplete_class.__name__
        if self.criterion == "mse_l1":
            from overcomplete.sae.losses import mse_l1

            loss = mse_l1(x, x_hat, pre, codes, dictionary, penalty=self.penalty)
        elif self.criterion == "top_k_auxiliary_loss":
            from overcomplete.sae.losses import top_k_auxiliary_loss

            loss = top_k_auxiliary_loss(x, x_hat, pre, codes, dictionary, penalty=self.penalty)
        elif cls_name in JUMP_CLASSES:
            from overcomplete.sae import heaviside

            l0 = heaviside(pre.relu(), self.sae.thresholds.exp(), self.sae.kernel_fn, self.sae.bandwidth)
            loss = mse + self.penalty * l0.sum(-1).mean()
        elif cls_name == "MpSAE":  # pre is the residual after the pursuit
            dead = (codes.amax(dim=0) < 1e-2).detach()
            loss = mse
            if dead.sum() > 10:
                loss = mse - self.penalty * (pre @ dictionary.T)[:, dead].mean()
        else:
            loss = mse
        return loss, {"mse": mse.detach()}

    def train(self, mode: bool = True):
        """overcomplete fuses its dictionary when put in eval mode, computed with autograd on; a
        detached copy keeps evaluation (and fvcore's trace) free of the training graph."""
        super().train(mode)
        for module in self.sae.modules():
            if getattr(module, "_fused_dictionary", None) is not None:
                module._fused_dictionary = module._fused_dictionary.detach()
        return self

    @torch.no_grad()
    def atoms(self) -> torch.Tensor:
        return self.sae.get_dictionary().detach().reshape(self.n_latents, *self.input_shape).clone()


__all__ = ["PREFIX", "OvercompleteSAE", "foreign_listing", "overcomplete_variant", "source_hash"]
