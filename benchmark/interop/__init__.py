"""Foreign SAEs (SPEC section 12): trained checkpoints of SAELens, sparsify and dictionary_learning
read as variants that are evaluated without training (`--variant checkpoint:DIR`, `eval`);
overcomplete's SAE classes trained by our loop (`--variant overcomplete:CLASS`); our trained
models written in SAELens' format (`export`).

The format of a checkpoint folder is told by its files:
- SAELens: cfg.json + sae_weights.safetensors          (benchmark/interop/saelens.py)
- sparsify: cfg.json + sae.safetensors                  (benchmark/interop/sparsify.py)
- dictionary_learning: ae.pt + config.json              (benchmark/interop/dictionary_learning.py)
"""
import hashlib
from pathlib import Path

from benchmark.errors import UserError
from benchmark.interop import dictionary_learning, saelens, sparsify
from benchmark.interop.checkpoint import CheckpointSAE, LinearCheckpoint, check_input_dim

FORMATS = {"SAELens": saelens, "sparsify": sparsify, "dictionary_learning": dictionary_learning}
CHECKPOINT_PREFIX = "checkpoint:"
EXPECTED = ("SAELens (cfg.json + sae_weights.safetensors), sparsify (cfg.json + sae.safetensors) or "
            "dictionary_learning (ae.pt + config.json)")

_classes: dict[tuple[str, str], type] = {}  # (folder, content hash) -> class: each version loaded once


def detect_format(directory: Path) -> str:
    """The name of the format whose files `directory` holds (a UserError naming what was found)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"checkpoint folder {directory} does not exist")
    for name, module in FORMATS.items():
        if module.matches(directory):
            return name
    found = sorted(p.name for p in directory.iterdir())[:8]
    listing = ", ".join(found) if found else "nothing"
    raise UserError(f"{directory} holds no known checkpoint format (found: {listing}); expected {EXPECTED}")


def load_checkpoint(directory: Path) -> LinearCheckpoint:
    return FORMATS[detect_format(directory)].load(Path(directory))


def checkpoint_name(directory) -> str:
    """Its name in results.csv: `ckpt:` and the folder's name."""
    return f"ckpt:{Path(directory).resolve().name}"


def checkpoint_hash(directory) -> str:
    """Hash of every file of the folder: a changed checkpoint is a new model (re-run, not resumed)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).iterdir() if p.is_file()):
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def checkpoint_class(directory) -> type:
    """A CheckpointSAE subclass holding the checkpoint of `directory` (read once per version)."""
    directory = Path(directory).resolve()
    detect_format(directory)  # a clear line before hashing a folder of anything
    key = (str(directory), checkpoint_hash(directory))
    if key not in _classes:
        ckpt = load_checkpoint(directory)
        name = checkpoint_name(directory)
        _classes[key] = type("CheckpointSAE", (CheckpointSAE,), {
            "checkpoint": ckpt, "name": name, "__doc__": f"{name}: {ckpt.describe()}"})
    return _classes[key]


__all__ = ["CHECKPOINT_PREFIX", "CheckpointSAE", "LinearCheckpoint", "check_input_dim", "checkpoint_class",
           "checkpoint_hash", "checkpoint_name", "detect_format", "load_checkpoint"]
