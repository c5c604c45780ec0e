"""SAELens checkpoints: `cfg.json` + `sae_weights.safetensors` (what `SAE.save_model` writes).

Fields read (SAELens 6 names; pre-6 names where they differ):
- `architecture`: "standard", "topk", "abstopk", "jumprelu", "batchtopk", "matryoshka_batchtopk",
  "gated", "matching_pursuit" (missing: "standard", as SAELens defaults it);
- `d_in`, `d_sae`; `k` for topk (pre-6: `activation_fn_kwargs.k` with `activation_fn_str` "topk");
- `apply_b_dec_to_input` (default true): subtract b_dec before encoding;
- `rescale_acts_by_decoder_norm` (topk and batchtopk training configs, default false);
- `normalize_activations`: "none", or "expected_average_only_in" (see below).
Tensors: `W_enc` [d_in, d_sae], `b_enc` [d_sae], `W_dec` [d_sae, d_in], `b_dec` [d_in];
`threshold` [d_sae] (jumprelu); `topk_threshold` (scalar, batchtopk training checkpoints);
`b_gate`, `b_mag`, `r_mag` (gated, which has no b_enc). Any dtype is read as float32 (a bfloat16 or
float16 file, cfg `dtype`, has its forward compared with ours on load: checkpoint.py).

Encoding, as SAELens' inference classes do it (hidden_pre = (x - b_dec·apply_b_dec_to_input) W_enc + b_enc):
- standard: ReLU(hidden_pre);
- topk: the k largest hidden_pre per sample, then ReLU (after multiplying hidden_pre by the decoder
  row norms when `rescale_acts_by_decoder_norm`, decoding codes / norms: folded into the weights);
- abstopk: the k largest |hidden_pre| per sample, signed, no ReLU (rescaling as for topk);
- matching_pursuit (tied: no W_enc, no b_enc): SAELens' pursuit on x - b_dec·apply_b_dec_to_input
  over the rows of W_dec, with `residual_threshold` (default 0.01), `max_iterations` (default
  d_in) and `stop_on_duplicate_support` (default true) (benchmark.interop.checkpoint.matching_pursuit);
  decoding adds b_dec only when apply_b_dec_to_input, as SAELens' does;
- jumprelu: ReLU(hidden_pre) where hidden_pre > ReLU(threshold), else 0;
- batchtopk, matryoshka_batchtopk: SAELens saves these as jumprelu with every threshold equal to
  the learned `topk_threshold` (BatchTopK's inference rule), so that is how they are encoded;
- gated: 1[hidden_pre + b_gate > 0] · ReLU(exp(r_mag) · hidden_pre + b_mag), hidden_pre without b_enc.
Decoding: codes W_dec + b_dec.

`normalize_activations: expected_average_only_in`: SAELens' inference SAE applies nothing for it
(its training folds the scaling factor into the weights when it finishes, and `from_pretrained`
folds the factor its registry knows). So the weights are read as they are, unless the folder
holds SAELens' `activation_scaler.json` (a training checkpoint) with a `scaling_factor` f: then it
is folded as SAELens folds it, W_enc·f, W_dec / f, b_dec / f.

Refused, each with the reason: `normalize_activations` constant_norm_rescale, layer_norm and
covariance_whitening (they rescale or transform every sample by what decode must remember from
encode), a finetuning scaling factor, `activation_fn` other than relu/topk, and any other
architecture.
"""
from pathlib import Path

import torch

from benchmark.errors import UserError
from benchmark.interop._files import check_shape, config_int, read_json, read_safetensors, require, stored_dtype
from benchmark.interop.checkpoint import LinearCheckpoint

CONFIG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
ARCHITECTURES = ("standard", "topk", "abstopk", "jumprelu", "batchtopk", "matryoshka_batchtopk", "gated",
                 "matching_pursuit")
SCALER = "activation_scaler.json"  # SAELens training checkpoints: {"scaling_factor": f, ...}
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
    W_dec, b_dec = tensors["W_dec"].float(), tensors["b_dec"].float()
    W_enc = W_dec.T if architecture == "matching_pursuit" else tensors["W_enc"].float()
    b_enc = tensors["b_enc"].float() if "b_enc" in needed else torch.zeros(d_sae)
    if cfg.get("rescale_acts_by_decoder_norm", False):  # SAELens' own fold (_fold_norm_topk)
        norms = W_dec.norm(dim=-1).clamp(min=1e-8)
        W_enc, b_enc, W_dec = W_enc * norms, b_enc * norms, W_dec / norms[:, None]
    factor = _scaling_factor(cfg, directory)
    if factor is not None and architecture == "matching_pursuit":  # its override: W_dec stays, the threshold moves
        b_dec = b_dec / factor
        threshold = cfg.get("residual_threshold", 1e-2)
        if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
            cfg = dict(cfg, residual_threshold=threshold / factor)
    elif factor is not None:  # SAE.fold_activation_norm_scaling_factor
        W_enc, W_dec, b_dec = W_enc * factor, W_dec / factor, b_dec / factor
    common = dict(format="SAELens", architecture=architecture, directory=directory, W_enc=W_enc,
                  b_enc=b_enc, W_dec=W_dec, b_dec=b_dec, center=bool(cfg.get("apply_b_dec_to_input", True)),
                  stored_dtype=stored_dtype(tensors))
    activation = _activation(cfg, architecture)
    if activation in ("topk", "abstopk"):
        return LinearCheckpoint(**common, activation=activation, k=_k(cfg, cfg_path))
    if architecture == "jumprelu":
        return LinearCheckpoint(**common, activation="jumprelu", threshold=tensors["threshold"].float().relu())
    if architecture in ("batchtopk", "matryoshka_batchtopk"):
        check_shape(tensors, "topk_threshold", (), weights_path, "the BatchTopK inference threshold (a scalar)")
        threshold = torch.full((d_sae,), float(tensors["topk_threshold"])).relu()
        return LinearCheckpoint(**common, activation="jumprelu", threshold=threshold)
    if architecture == "matching_pursuit":
        return _pursuit(common, cfg, cfg_path)
    if architecture == "gated":
        gate = {"gate_bias": tensors["b_gate"], "r_mag": tensors["r_mag"], "mag_bias": tensors["b_mag"]}
        return LinearCheckpoint(**common, activation="gated", gate=gate)
    return LinearCheckpoint(**common, activation="relu")


def _pursuit(common: dict, cfg: dict, path: Path) -> LinearCheckpoint:
    """SAELens' MatchingPursuitSAE: tied, and b_dec added back only where it was subtracted."""
    threshold, iterations = cfg.get("residual_threshold", 1e-2), cfg.get("max_iterations")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        raise UserError(f"{path}: residual_threshold must be a number; got {threshold!r}")
    if iterations is not None:
        iterations = config_int(cfg, "max_iterations", path)
    if not common["center"]:
        common = dict(common, b_dec=torch.zeros_like(common["b_dec"]))
    pursuit = {"residual_threshold": float(threshold), "max_iterations": iterations,
               "stop_on_duplicate_support": bool(cfg.get("stop_on_duplicate_support", True))}
    return LinearCheckpoint(**common, activation="pursuit", pursuit=pursuit)


def _needed_tensors(architecture: str) -> tuple[str, ...]:
    if architecture == "matching_pursuit":
        return ("W_dec", "b_dec")
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
        return architecture
    return "topk" if cfg.get("activation_fn_str", cfg.get("activation_fn", "relu")) == "topk" else "relu"


def _normalisation(cfg: dict) -> str | None:
    norm = cfg.get("normalize_activations", "none")
    if isinstance(norm, bool):  # SAELens' own backwards compatibility
        return "expected_average_only_in" if norm else "none"
    return norm


def _scaling_factor(cfg: dict, directory: Path) -> float | None:
    """The factor to fold for `expected_average_only_in` (module docstring), else None."""
    if _normalisation(cfg) != "expected_average_only_in":
        return None
    scaler = directory / SCALER
    if not scaler.is_file():
        return None  # as SAELens' inference: nothing applied, the weights are taken as folded
    factor = read_json(scaler).get("scaling_factor")
    if factor is None:
        return None
    if not isinstance(factor, (int, float)) or not factor > 0:
        raise UserError(f"{scaler}: scaling_factor must be a positive number; got {factor!r}")
    return float(factor)


def _k(cfg: dict, path: Path) -> int:
    if "k" in cfg:
        return config_int(cfg, "k", path)
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if "k" not in kwargs:
        raise UserError(f"{path}: a topk SAE needs 'k' (or activation_fn_kwargs.k); add it to cfg.json")
    return config_int(kwargs, "k", path)


def _check_supported(cfg: dict, path: Path) -> None:
    norm = _normalisation(cfg)
    if norm not in ("none", None, "expected_average_only_in"):
        raise UserError(f"{path}: normalize_activations {norm!r} is not supported: it rescales or transforms each "
                        "sample by what decoding must remember from encoding; fold the normalisation into the "
                        "data instead")
    if cfg.get("finetuning_scaling_factor"):
        raise UserError(f"{path}: finetuning_scaling_factor is not supported; fold it into W_dec and save again")
    activation = cfg.get("activation_fn_str", cfg.get("activation_fn", "relu"))
    if activation not in ("relu", "topk", None):
        raise UserError(f"{path}: activation_fn {activation!r} is not supported (relu or topk)")
