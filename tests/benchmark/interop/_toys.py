"""Tiny checkpoints in the real on-disk formats, and a toy dataset to score them on.

The "inverting" weights (W_enc = [I, -I], W_dec = [I; -I]) encode x - c (d values, c the input
bias) into 2d non-negative codes [ReLU(x - c), ReLU(c - x)], whose difference plus c is x again:
decode(encode(x)) = x exactly, a reconstruction R² of 1.
"""
import json

import torch
from safetensors.torch import save_file

from benchmark.data import Dataset
from benchmark.training.loop import TrainedModel

D = 6


def toy_dataset(d: int = D, n: int = 64, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    return Dataset("toy", torch.randn(n, d, generator=g), torch.randn(n, d, generator=g), {"seed": seed})


def inverting(d: int = D) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_enc [d, 2d], W_dec [2d, d]) with decode(encode(x)) = x for ReLU codes."""
    eye = torch.eye(d)
    return torch.cat([eye, -eye], 1), torch.cat([eye, -eye], 0)


def write_saelens(folder, cfg: dict, tensors: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file({n: t.contiguous() for n, t in tensors.items()}, str(folder / "sae_weights.safetensors"))


def saelens_cfg(architecture: str, d_in: int, d_sae: int, **extra) -> dict:
    """The fields SAELens 6 writes for an inference SAE (metadata trimmed)."""
    return {"architecture": architecture, "d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu",
            "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
            "metadata": {"model_name": "toy", "hook_name": "blocks.0.hook_resid_post"}, **extra}


def trained(model) -> TrainedModel:
    return TrainedModel(model=model, trained=False)
