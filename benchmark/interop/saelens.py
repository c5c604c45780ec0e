"""SAELens checkpoints: `cfg.json` + `sae_weights.safetensors` (what `SAE.save_model` writes).

Fields read (SAELens 6 names; pre-6 names where they differ):
- `architecture`: "standard", "topk", "jumprelu", "batchtopk", "matryoshka_batchtopk", "gated"
  (missing: "standard", as SAELens defaults it);
- `d_in`, `d_sae`; `k` for topk (pre-6: `activation_fn_kwargs.k` with `activation_fn_str` "topk");
- `apply_b_dec_to_input` (default true): subtract b_dec before encoding;
- `rescale_acts_by_decoder_norm` (topk and batchtopk training configs, default false);
- `normalize_activations`: only "none" (see below).
Tensors: `W_enc` [d_in, d_sae], `b_enc` [d_sae], `W_dec` [d_sae, d_in], `b_dec` [d_in];
`threshold` [d_sae] (jumprelu); `topk_threshold` (scalar, batchtopk training checkpoints);
`b_gate`, `b_mag`, `r_mag` (gated, which has no b_enc). Any dtype is read as float32.

Encoding, as SAELens' inference classes do it (hidden_pre = (x - b_dec·apply_b_dec_to_input) W_enc + b_enc):
- standard: ReLU(hidden_pre);
- topk: the k largest hidden_pre per sample, then ReLU (after multiplying hidden_pre by the decoder
  row norms when `rescale_acts_by_decoder_norm`, decoding codes / norms: folded into the weights);
- jumprelu: ReLU(hidden_pre) where hidden_pre > ReLU(threshold), else 0;
- batchtopk, matryoshka_batchtopk: SAELens saves these as jumprelu with every threshold equal to
  the learned `topk_threshold` (BatchTopK's inference rule), so that is how they are encoded;
- gated: 1[hidden_pre + b_gate > 0] · ReLU(exp(r_mag) · hidden_pre + b_mag), hidden_pre without b_enc.
Decoding: codes W_dec + b_dec.

Refused, each with the reason: `normalize_activations` other than "none" (constant_norm_rescale
and layer_norm rescale every sample by a factor that decode must remember from encode;
expected_average_only_in needs a scaling factor that is not in the checkpoint: fold it with
`SAE.fold_activation_norm_scaling_factor` and save again), a finetuning scaling factor,
`activation_fn` other than relu/topk, and any other architecture.
"""
from pathlib import Path

import torch

from benchmark.errors import UserError
from benchmark.interop._files import check_shape, config_int, read_json, read_safetensors, require
from benchmark.interop.checkpoint import LinearCheckpoint

CONFIG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
ARCHITECTURES = ("standard", "topk", "jumprelu", "batchtopk", "matryoshka_batchtopk", "gated")
BASE_TENSORS = ("W_enc", "b_enc", "W_dec", "b_dec")
BENCHMARK_KEY = "sae_benchmark"  # provenance written by our export; SAELens ignores unknown keys


def matches(directory: Path) -> bool:
    return (directory / CONFIG).is_file() and (directory / WEIGHTS).is_file()


def load(directory: Path) -> LinearCheckpoint:
    cfg_path, weights_path = directory / CONFIG, directory / WEIGHTS
    cfg = read_json(cfg_path)
    architecture = cfg.get("architecture", "standard")
    if architecture not in ARCHITECTURES:
        raise UserError(f"{cfg_path}: unknown SAELens architecture {architecture!r}; this suite reads "
                        f"{', '.join(ARCHITECTURES)}")
    _check_supported(cfg, cfg_path)
    d_in, d_sae = config_int(cfg, "d_in", cfg_path), config_int(cfg, "d_sae", cfg_path)
    tensors = read_safetensors(weights_path)
    needed = _needed_tensors(architecture)
    require(tensors, needed, weights_path, f"SAELens {architecture}")
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,),
              "threshold": (d_sae,), "b_gate": (d_sae,), "b_mag": (d_sae,), "r_mag": (d_sae,)}
    for name in needed:
        if name in shapes:
            check_shape(tensors, name, shapes[name], weights_path, f"cfg.json d_in {d_in}, d_sae {d_sae}")
    W_enc, W_dec = tensors["W_enc"].float(), tensors["W_dec"].float()
    b_dec = tensors["b_dec"].float()
    b_enc = tensors["b_enc"].float() if "b_enc" in needed else torch.zeros(d_sae)
    if cfg.get("rescale_acts_by_decoder_norm", False):  # SAELens' own fold (_fold_norm_topk)
        norms = W_dec.norm(dim=-1).clamp(min=1e-8)
        W_enc, b_enc, W_dec = W_enc * norms, b_enc * norms, W_dec / norms[:, None]
    common = dict(format="SAELens", architecture=architecture, directory=directory, W_enc=W_enc,
                  b_enc=b_enc, W_dec=W_dec, b_dec=b_dec, center=bool(cfg.get("apply_b_dec_to_input", True)))
    activation = _activation(cfg, architecture)
    if activation == "topk":
        return LinearCheckpoint(**common, activation="topk", k=_k(cfg, cfg_path))
    if architecture == "jumprelu":
        return LinearCheckpoint(**common, activation="jumprelu", threshold=tensors["threshold"].float().relu())
    if architecture in ("batchtopk", "matryoshka_batchtopk"):
        check_shape(tensors, "topk_threshold", (), weights_path, "the BatchTopK inference threshold (a scalar)")
        threshold = torch.full((d_sae,), float(tensors["topk_threshold"])).relu()
        return LinearCheckpoint(**common, activation="jumprelu", threshold=threshold)
    if architecture == "gated":
        gate = {"gate_bias": tensors["b_gate"], "r_mag": tensors["r_mag"], "mag_bias": tensors["b_mag"]}
        return LinearCheckpoint(**common, activation="gated", gate=gate)
    return LinearCheckpoint(**common, activation="relu")


def _needed_tensors(architecture: str) -> tuple[str, ...]:
    if architecture == "gated":
        return ("W_enc", "W_dec", "b_dec", "b_gate", "b_mag", "r_mag")
    if architecture == "jumprelu":
        return BASE_TENSORS + ("threshold",)
    if architecture in ("batchtopk", "matryoshka_batchtopk"):
        return BASE_TENSORS + ("topk_threshold",)
    return BASE_TENSORS


def _activation(cfg: dict, architecture: str) -> str:
    """Pre-6 SAELens wrote TopK SAEs as architecture "standard" with activation_fn_str "topk"."""
    if architecture != "standard":
        return "topk" if architecture == "topk" else architecture
    return "topk" if cfg.get("activation_fn_str", cfg.get("activation_fn", "relu")) == "topk" else "relu"


def _k(cfg: dict, path: Path) -> int:
    if "k" in cfg:
        return config_int(cfg, "k", path)
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if "k" not in kwargs:
        raise UserError(f"{path}: a topk SAE needs 'k' (or activation_fn_kwargs.k); add it to cfg.json")
    return config_int(kwargs, "k", path)


def _check_supported(cfg: dict, path: Path) -> None:
    norm = cfg.get("normalize_activations", "none")
    if isinstance(norm, bool):  # SAELens' own backwards compatibility
        norm = "expected_average_only_in" if norm else "none"
    if norm not in ("none", None):
        why = {"expected_average_only_in": "its scaling factor is not in the checkpoint; fold it into the "
                                           "weights (SAE.fold_activation_norm_scaling_factor) and save again"}
        raise UserError(f"{path}: normalize_activations {norm!r} is not supported: "
                        + why.get(norm, "it rescales each sample by a factor that decoding must remember from "
                                        "encoding; fold the normalisation into the data instead"))
    if cfg.get("finetuning_scaling_factor"):
        raise UserError(f"{path}: finetuning_scaling_factor is not supported; fold it into W_dec and save again")
    activation = cfg.get("activation_fn_str", cfg.get("activation_fn", "relu"))
    if activation not in ("relu", "topk", None):
        raise UserError(f"{path}: activation_fn {activation!r} is not supported (relu or topk)")
