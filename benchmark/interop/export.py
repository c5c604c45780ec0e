"""Our trained models in SAELens' format (`cfg.json` + `sae_weights.safetensors`), readable by
SAELens' `SAE.load_from_disk` and by this suite's `eval` with the same scores.

What each variant becomes (all have W_enc, b_enc, W_dec, b_dec and apply_b_dec_to_input = true,
because our encoders compute (x - b_dec) W_enc + b_enc; a loaded checkpoint keeps its own
apply_b_dec_to_input, e.g. false for dictionary_learning's JumpReluAutoEncoder):
- relu, dense: "standard";
- topk (and matryoshka with `activation: topk`): "topk" with the model's current k;
- jumprelu: "jumprelu" with threshold = exp(log θ), the learned per-latent threshold;
- batchtopk, matryoshka: "jumprelu" with every threshold equal to the model's inference threshold
  at its current k (SAELens saves its own BatchTopK SAEs the same way).
Refused by name with the reason: mp (its codes come from matching pursuit over the dictionary,
which SAELens' encoder, one affine map and an activation, cannot express), tensor and conv (their
decoders are not one dense matrix with free rows: they would need SAELens classes that do not
exist), supervised (no encoder), and any model without these weights.

The cfg also carries `sae_benchmark` (variant, dataset, seed, setting, input shape): provenance
that SAELens ignores (it keeps only the fields its config classes declare).
"""
import json
import math
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from benchmark.errors import UserError
from benchmark.interop.checkpoint import CheckpointSAE
from benchmark.interop.saelens import BENCHMARK_KEY, CONFIG, WEIGHTS

from baselines.batchtopk import BatchTopKSAE
from baselines.jumprelu import JumpReLUSAE
from baselines.matryoshka import MatryoshkaSAE
from baselines.mp import MatchingPursuitSAE
from baselines.relu import ReluSAE
from baselines.topk import TopKSAE

REFUSALS = {
    MatchingPursuitSAE: "its codes come from k steps of matching pursuit over the dictionary, which "
                        "SAELens' encoder (one affine map and an activation) cannot express",
}
NOT_LINEAR = ("its decoder is not one dense matrix plus a bias (or it has no encoder), which is "
              "what every SAELens architecture is")


def check_exportable(variant_cls, name: str) -> None:
    """A UserError naming why models of `variant_cls` cannot be SAELens checkpoints (before any
    training)."""
    for cls, why in REFUSALS.items():
        if issubclass(variant_cls, cls):
            raise UserError(f"{name} cannot be written in the SAELens format: {why}")
    if not issubclass(variant_cls, (ReluSAE, TopKSAE, JumpReLUSAE, CheckpointSAE)):
        raise UserError(f"{name} cannot be written in the SAELens format: {NOT_LINEAR}")


def saelens_form(model) -> tuple[str, dict[str, torch.Tensor], dict]:
    """(architecture, tensors, extra cfg fields) of `model` in SAELens' terms, or a UserError."""
    name = getattr(model, "name", None) or type(model).__name__
    check_exportable(type(model), name)
    if isinstance(model, CheckpointSAE):
        return _checkpoint_form(model, name)
    weights = {"W_enc": model.W_enc, "b_enc": model.b_enc, "W_dec": model.W_dec, "b_dec": model.b_dec}
    if isinstance(model, JumpReLUSAE):
        return "jumprelu", dict(weights, threshold=model.threshold), {}
    if isinstance(model, BatchTopKSAE) and not (isinstance(model, MatryoshkaSAE) and model.activation == "topk"):
        if not bool(model.calibrated):
            raise UserError(f"{name} was never trained, so it has no inference threshold to export")
        threshold = model.thresholds[model.k - 1].expand(model.n_latents)
        return "jumprelu", dict(weights, threshold=threshold), {}
    if isinstance(model, TopKSAE):
        return "topk", weights, {"k": int(model.k)}
    return "standard", weights, {}


def _checkpoint_form(model: CheckpointSAE, name: str):
    """A loaded checkpoint, written again (e.g. a sparsify or dictionary_learning one as SAELens).
    `apply_b_dec_to_input` carries whether it subtracts b_dec before encoding: dictionary_learning's
    JumpReluAutoEncoder and AutoEncoderNew do not, and SAELens expresses that."""
    if model.activation not in ("relu", "topk", "jumprelu"):
        raise UserError(f"{name} cannot be written in the SAELens format by this suite: only relu, topk and "
                        f"jumprelu checkpoints are (this one is {model.activation})")
    weights = {"W_enc": model.W_enc, "b_enc": model.b_enc, "W_dec": model.W_dec, "b_dec": model.b_dec}
    extra = {"apply_b_dec_to_input": bool(model.center)}
    if model.activation == "topk":
        return "topk", weights, dict(extra, k=int(model.k))
    if model.activation == "jumprelu":
        return "jumprelu", dict(weights, threshold=model.threshold.expand(model.n_latents)), extra
    return "standard", weights, extra


def export_saelens(model, directory: Path, provenance: dict | None = None) -> Path:
    """Write `model` as a SAELens checkpoint into the new folder `directory` (refused if it exists
    and is not empty, so nothing is overwritten); returns the folder."""
    directory = Path(directory)
    architecture, tensors, extra = saelens_form(model)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UserError(f"--to {directory} already exists and is not an empty folder; choose a new folder")
    d_sae, d_in = tensors["W_dec"].shape
    cfg = {
        "architecture": architecture,
        "d_in": int(d_in),
        "d_sae": int(d_sae),
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": extra.get("apply_b_dec_to_input", True),
        "normalize_activations": "none",
        "reshape_activations": "none",
        **({"k": extra["k"]} if "k" in extra else {}),
        BENCHMARK_KEY: dict(provenance or {}, input_shape=list(model.input_shape)),
    }
    assert math.prod(model.input_shape) == d_in
    weights = {n: t.detach().to("cpu", torch.float32).contiguous() for n, t in tensors.items()}
    directory.mkdir(parents=True, exist_ok=True)
    # Written under temporary names and renamed: a killed export never leaves a half checkpoint.
    tmp_weights, tmp_cfg = directory / f".{WEIGHTS}.tmp", directory / f".{CONFIG}.tmp"
    save_file(weights, str(tmp_weights))
    tmp_cfg.write_text(json.dumps(cfg, indent=2))
    os.replace(tmp_weights, directory / WEIGHTS)
    os.replace(tmp_cfg, directory / CONFIG)
    return directory
