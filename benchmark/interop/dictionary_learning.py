"""dictionary_learning (saprmarks/dictionary_learning) checkpoints: `ae.pt` (the model's state dict,
torch.save) + `config.json` (`{"trainer": {...}, "buffer": {...}}`, as `trainSAE` writes it).

The class is `trainer.dict_class` (an "AutoEncoder" whose state dict has AutoEncoderNew's keys is
read as AutoEncoderNew: dictionary_learning 0.1.0's StandardTrainer and StandardTrainerAprilUpdate
write "AutoEncoder" even when they trained an AutoEncoderNew); `trainer.activation_dim` and
`trainer.dict_size` give the shapes and `trainer.k` the k of the top-k classes. State-dict keys and
encoding, per class (nn.Linear weights are [out, in]: encoder.weight [dict_size, activation_dim],
decoder.weight [activation_dim, dict_size]):
- AutoEncoder (`bias`, `encoder.weight`, `encoder.bias`, `decoder.weight`):
  ReLU(encoder(x - bias)); decoder(f) + bias.
- AutoEncoderNew (`encoder.*`, `decoder.weight`, `decoder.bias`): ReLU(encoder(x)); decoder(f).
- AutoEncoderTopK (`encoder.*`, `decoder.weight`, `b_dec`, `k`, `threshold`): the k largest of
  ReLU(encoder(x - b_dec)) (its `encode` default, use_threshold=False); decoder(f) + b_dec.
- BatchTopKSAE (same keys): ReLU(encoder(x - b_dec)) kept where it exceeds the scalar `threshold`
  (its `encode` default, use_threshold=True); decoder(f) + b_dec.
- MatryoshkaBatchTopKSAE (`W_enc` [activation_dim, dict_size], `b_enc`, `W_dec`, `b_dec`, `k`,
  `threshold`, `group_sizes`): ReLU((x - b_dec) W_enc + b_enc) above `threshold`; f W_dec + b_dec.
- JumpReluAutoEncoder (`W_enc`, `b_enc`, `W_dec`, `b_dec`, `threshold` [dict_size]):
  ReLU(pre · 1[pre > threshold]), pre = x W_enc + b_enc (apply_b_dec_to_input is False unless set
  after loading); f W_dec + b_dec.
- GatedAutoEncoder (`encoder.weight`, `decoder.weight`, `decoder_bias`, `gate_bias`, `mag_bias`,
  `r_mag`): with h = encoder(x - decoder_bias), 1[h + gate_bias > 0] · ReLU(exp(r_mag) h + mag_bias);
  decoder(f) + decoder_bias.

Codes are those of the saved weights, what the trained model's `encode` gives. The library's
`AutoEncoder.from_pretrained` normalises by default (`normalize_decoder=True`): it divides each
decoder column by its norm and multiplies that latent's encoder row and bias by it, so its codes
are ours times each latent's decoder norm, with the same reconstructions. The other classes'
`from_pretrained` load the weights as saved.
"""
from pathlib import Path

import torch

from benchmark.errors import UserError
from benchmark.interop._files import check_shape, config_int, read_json, read_torch_state, require, stored_dtype
from benchmark.interop.checkpoint import LinearCheckpoint

CONFIG = "config.json"
WEIGHTS = "ae.pt"
LINEAR = ("encoder.weight", "encoder.bias", "decoder.weight")
MATRICES = ("W_enc", "b_enc", "W_dec", "b_dec")
KEYS = {
    "AutoEncoder": LINEAR + ("bias",),
    "AutoEncoderNew": LINEAR + ("decoder.bias",),
    "AutoEncoderTopK": LINEAR + ("b_dec", "k"),
    "BatchTopKSAE": LINEAR + ("b_dec", "threshold"),
    "MatryoshkaBatchTopKSAE": MATRICES + ("threshold",),
    "JumpReluAutoEncoder": MATRICES + ("threshold",),
    "GatedAutoEncoder": ("encoder.weight", "decoder.weight", "decoder_bias", "gate_bias", "mag_bias", "r_mag"),
}


def matches(directory: Path) -> bool:
    return (directory / CONFIG).is_file() and (directory / WEIGHTS).is_file()


def load(directory: Path) -> LinearCheckpoint:
    cfg_path, weights_path = directory / CONFIG, directory / WEIGHTS
    trainer = read_json(cfg_path).get("trainer")
    if not isinstance(trainer, dict) or "dict_class" not in trainer:
        raise UserError(f"{cfg_path}: needs a 'trainer' object with 'dict_class' (as dictionary_learning's "
                        "trainSAE writes it)")
    dict_class = trainer["dict_class"]
    if dict_class not in KEYS:
        raise UserError(f"{cfg_path}: unknown dictionary_learning dict_class {dict_class!r}; this suite reads "
                        f"{', '.join(KEYS)}")
    d_in = config_int(trainer, "activation_dim", cfg_path)
    d_sae = config_int(trainer, "dict_size", cfg_path)
    state = {name: value for name, value in read_torch_state(weights_path).items()}
    if dict_class == "AutoEncoder" and "bias" not in state and "decoder.bias" in state:
        dict_class = "AutoEncoderNew"  # 0.1.0's standard trainers write "AutoEncoder" whatever class they trained
    require(state, KEYS[dict_class], weights_path, f"dictionary_learning {dict_class}")
    why = f"config.json activation_dim {d_in}, dict_size {d_sae}"
    shapes = {"encoder.weight": (d_sae, d_in), "encoder.bias": (d_sae,), "decoder.weight": (d_in, d_sae),
              "decoder.bias": (d_in,), "bias": (d_in,), "b_dec": (d_in,), "decoder_bias": (d_in,),
              "W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "gate_bias": (d_sae,),
              "mag_bias": (d_sae,), "r_mag": (d_sae,)}
    for name in KEYS[dict_class]:
        if name in shapes:
            check_shape(state, name, shapes[name], weights_path, why)
    common = dict(format="dictionary_learning", architecture=dict_class, directory=directory,
                  stored_dtype=stored_dtype(state))
    zeros_sae = torch.zeros(d_sae)

    if dict_class in ("MatryoshkaBatchTopKSAE", "JumpReluAutoEncoder"):
        W_enc, b_enc, W_dec, b_dec = (state[n] for n in MATRICES)
        if dict_class == "JumpReluAutoEncoder":
            check_shape(state, "threshold", (d_sae,), weights_path, why)
            # ReLU(pre · 1[pre > θ]) = ReLU(pre) · 1[pre > θ] for any θ
            return LinearCheckpoint(**common, W_enc=W_enc, b_enc=b_enc, W_dec=W_dec, b_dec=b_dec,
                                    center=False, activation="jumprelu", threshold=state["threshold"])
        return LinearCheckpoint(**common, W_enc=W_enc, b_enc=b_enc, W_dec=W_dec, b_dec=b_dec, center=True,
                                activation="jumprelu", threshold=_scalar_threshold(state, d_sae, weights_path))

    W_enc, W_dec = state["encoder.weight"].t(), state["decoder.weight"].t()
    if dict_class == "GatedAutoEncoder":
        gate = {n: state[n] for n in ("gate_bias", "mag_bias", "r_mag")}
        b_dec = state["decoder_bias"]
        return LinearCheckpoint(**common, W_enc=W_enc, b_enc=zeros_sae, W_dec=W_dec, b_dec=b_dec, center=True,
                                activation="gated", gate=gate)
    b_enc = state["encoder.bias"]
    if dict_class == "AutoEncoder":
        return LinearCheckpoint(**common, W_enc=W_enc, b_enc=b_enc, W_dec=W_dec, b_dec=state["bias"],
                                center=True, activation="relu")
    if dict_class == "AutoEncoderNew":
        return LinearCheckpoint(**common, W_enc=W_enc, b_enc=b_enc, W_dec=W_dec, b_dec=state["decoder.bias"],
                                center=False, activation="relu")
    b_dec = state["b_dec"]
    if dict_class == "AutoEncoderTopK":
        k = int(state["k"]) if "k" not in trainer else config_int(trainer, "k", cfg_path)
        return LinearCheckpoint(**common, W_enc=W_enc, b_enc=b_enc, W_dec=W_dec, b_dec=b_dec, center=True,
                                activation="topk", k=min(k, d_sae))
    return LinearCheckpoint(**common, W_enc=W_enc, b_enc=b_enc, W_dec=W_dec, b_dec=b_dec, center=True,
                            activation="jumprelu", threshold=_scalar_threshold(state, d_sae, weights_path))


def _scalar_threshold(state: dict, d_sae: int, path: Path) -> torch.Tensor:
    """BatchTopK's inference threshold, one scalar for every latent; it is applied to the ReLU'd
    activations, so on the pre-activation it gates at max(threshold, 0) (-1: never calibrated)."""
    check_shape(state, "threshold", (), path, "the BatchTopK inference threshold (a scalar)")
    return torch.full((d_sae,), float(state["threshold"])).clamp_min(0.0)
