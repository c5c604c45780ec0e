"""EleutherAI sparsify checkpoints: `cfg.json` + `sae.safetensors` (what `SparseCoder.save_to_disk`
writes: the SparseCoderConfig fields plus `d_in`).

Fields read: `d_in`, `k`, `num_latents` (0: `d_in · expansion_factor`), `activation` ("topk", the
default, or "groupmax"); `transcode`, `skip_connection` and the other options that make the output
depend on more than the codes are refused. Tensors: `encoder.weight` [num_latents, d_in],
`encoder.bias` [num_latents], `W_dec` [num_latents, d_in], `b_dec` [d_in].

Encoding, as sparsify's `encode` does it: ReLU(encoder(x - b_dec)), then the k largest values
("topk"), or the largest value of each of k equal groups of latents ("groupmax"). Decoding: the
codes times W_dec plus b_dec.
"""
from pathlib import Path

from benchmark.errors import UserError
from benchmark.interop._files import check_shape, config_int, read_json, read_safetensors, require, stored_dtype
from benchmark.interop.checkpoint import LinearCheckpoint

CONFIG = "cfg.json"
WEIGHTS = "sae.safetensors"
TENSORS = ("encoder.weight", "encoder.bias", "W_dec", "b_dec")
ACTIVATIONS = ("topk", "groupmax")
# Options whose output is not a function of the codes alone (or not an autoencoder of x).
REFUSED_OPTIONS = {
    "transcode": "a transcoder predicts another layer's output, not its own input",
    "skip_connection": "its skip connection adds x·W_skip to the output, which the codes cannot carry",
    "embed_skip": "its embedding skip adds a term from another layer's activations",
    "gram_lookup": "it subtracts an n-gram table's mean from its input, which is not in the checkpoint",
    "signed": "signed top-k codes are not supported",
}


def matches(directory: Path) -> bool:
    return (directory / CONFIG).is_file() and (directory / WEIGHTS).is_file()


def load(directory: Path) -> LinearCheckpoint:
    cfg_path, weights_path = directory / CONFIG, directory / WEIGHTS
    cfg = read_json(cfg_path)
    for option, why in REFUSED_OPTIONS.items():
        if cfg.get(option):
            raise UserError(f"{cfg_path}: {option} is set, which this suite cannot evaluate: {why}")
    activation = cfg.get("activation", "topk")
    if activation not in ACTIVATIONS:
        raise UserError(f"{cfg_path}: unknown sparsify activation {activation!r}; this suite reads "
                        f"{', '.join(ACTIVATIONS)}")
    d_in, k = config_int(cfg, "d_in", cfg_path), config_int(cfg, "k", cfg_path)
    num_latents = int(cfg.get("num_latents") or 0) or d_in * config_int(cfg, "expansion_factor", cfg_path)
    tensors = read_safetensors(weights_path)
    require(tensors, TENSORS, weights_path, "a sparsify SAE")
    why = f"cfg.json d_in {d_in}, {num_latents} latents"
    for name, shape in (("encoder.weight", (num_latents, d_in)), ("encoder.bias", (num_latents,)),
                        ("W_dec", (num_latents, d_in)), ("b_dec", (d_in,))):
        check_shape(tensors, name, shape, weights_path, why)
    if activation == "groupmax" and num_latents % k:
        raise UserError(f"{cfg_path}: groupmax needs num_latents ({num_latents}) divisible by k ({k})")
    b_dec = tensors["b_dec"].float()
    return LinearCheckpoint(format="sparsify", architecture=activation, directory=directory,
                            W_enc=tensors["encoder.weight"].float().t(), b_enc=tensors["encoder.bias"],
                            W_dec=tensors["W_dec"], b_dec=b_dec, center=True, activation=activation,
                            k=min(k, num_latents), stored_dtype=stored_dtype(tensors))
