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
from benchmark.interop.checkpoint import CheckpointFamilySAE, CheckpointSAE, LinearCheckpoint, check_input_dim

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
    for name, module in FORMATS.items():  # a format's weights without its config: name what is missing
        if (directory / module.WEIGHTS).is_file():
            raise UserError(f"{directory} holds {module.WEIGHTS} but no {module.CONFIG}, which a {name} checkpoint "
                            "needs beside it; copy it from where the weights came from")
    found = sorted(p.name for p in directory.iterdir())[:8]
    listing = ", ".join(found) if found else "nothing"
    raise UserError(f"{directory} holds no known checkpoint format (found: {listing}); expected {EXPECTED}")


def load_checkpoint(directory: Path) -> LinearCheckpoint:
    return FORMATS[detect_format(directory)].load(Path(directory))


FAMILY_SEPARATOR = "|"  # checkpoint:DIR1|DIR2|...: one family of checkpoints (a sweep)


def members_of(target) -> list[Path]:
    """The folders of a `checkpoint:` target: one, or a family's."""
    return [Path(part) for part in str(target).split(FAMILY_SEPARATOR)]


def canonical_target(target) -> str:
    """Absolute folders, a family's sorted: the same family whatever the order given."""
    resolved = [str(p.resolve()) for p in members_of(target)]
    return FAMILY_SEPARATOR.join(sorted(resolved) if len(resolved) > 1 else resolved)


def family_key(ckpt: LinearCheckpoint) -> tuple:
    """Checkpoints with the same key form one family."""
    return (ckpt.format, ckpt.architecture, ckpt.activation, ckpt.d_in, ckpt.d_sae)


def family_name(ckpt: LinearCheckpoint) -> str:
    return f"ckpt:{ckpt.format}-{ckpt.architecture}-{ckpt.d_sae}"


def checkpoint_name(target) -> str:
    """Its name in results.csv: `ckpt:` and the folder's name; a family's, `ckpt:` and its
    format, architecture and width."""
    members = members_of(target)
    if len(members) > 1:
        return checkpoint_class(target).name
    return f"ckpt:{members[0].resolve().name}"


def checkpoint_hash(target) -> str:
    """Hash of every file of the folder(s): a changed checkpoint is a new model (re-run, not resumed)."""
    digest = hashlib.sha256()
    for directory in members_of(canonical_target(target)):
        for path in sorted(p for p in Path(directory).iterdir() if p.is_file()):
            digest.update(path.name.encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def checkpoint_class(target) -> type:
    """A CheckpointSAE subclass holding the checkpoint of a folder, or a CheckpointFamilySAE
    subclass holding a family's (each version read once per process)."""
    members = members_of(canonical_target(target))
    for directory in members:
        detect_format(directory)  # a clear line before hashing a folder of anything
    key = (canonical_target(target), checkpoint_hash(target))
    if key not in _classes:
        _classes[key] = _family_class(members) if len(members) > 1 else _single_class(members[0])
    return _classes[key]


def _single_class(directory: Path) -> type:
    ckpt = load_checkpoint(directory)
    name = checkpoint_name(directory)
    return type("CheckpointSAE", (CheckpointSAE,), {"checkpoint": ckpt, "name": name,
                                                    "__doc__": f"{name}: {ckpt.describe()}"})


def _family_class(directories: list[Path]) -> type:
    loaded = {d.name: checkpoint_class(d).checkpoint for d in directories}  # each member read once
    if len(loaded) < len(directories):
        raise UserError("checkpoints of one family need distinct folder names; got "
                        f"{', '.join(str(d) for d in directories)}")
    keys = {family_key(c) for c in loaded.values()}
    if len(keys) > 1:
        raise UserError(f"{', '.join(loaded)}: not one family (format, architecture, activation, d_in and d_sae "
                        "must agree)")
    first = next(iter(loaded.values()))
    name = family_name(first)
    return type("CheckpointFamilySAE", (CheckpointFamilySAE,), {
        "checkpoint": first, "members": loaded, "name": name,
        "__doc__": f"{name}: {len(loaded)} checkpoints ({', '.join(loaded)}), {first.describe()}"})


__all__ = ["CHECKPOINT_PREFIX", "FAMILY_SEPARATOR", "CheckpointFamilySAE", "CheckpointSAE", "LinearCheckpoint",
           "canonical_target", "check_input_dim", "checkpoint_class", "checkpoint_hash", "checkpoint_name",
           "detect_format", "family_key", "load_checkpoint", "members_of"]
