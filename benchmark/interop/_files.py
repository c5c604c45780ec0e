"""Reading checkpoint files: every problem is one line of a UserError that names the file and the fix."""
import json
from pathlib import Path

import torch

from benchmark.errors import UserError


def read_json(path: Path) -> dict:
    try:
        raw = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON (line {err.lineno}: {err.msg}); re-save the checkpoint's "
                        "config") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} must hold a JSON object (the checkpoint's config), got {type(raw).__name__}")
    return raw


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{path} is not a readable safetensors file ({why}); re-save or re-download it") from None


def read_torch_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict saved by torch.save, read without running any pickled code (weights_only)."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds (UnpicklingError, RuntimeError, EOFError, ...)
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{path} is not a readable torch state dict ({type(err).__name__}: {why[:200]}); "
                        "re-save it with torch.save(model.state_dict(), ...)") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} must hold a state dict (tensor names to tensors); save model.state_dict()")
    return state


def stored_dtype(tensors: dict[str, torch.Tensor]) -> torch.dtype:
    """The least precise floating dtype among the tensors (float32 when there are none)."""
    floats = [t.dtype for t in tensors.values() if t.dtype.is_floating_point]
    return max(floats, key=lambda dtype: torch.finfo(dtype).eps, default=torch.float32)


def require(tensors: dict, names, path: Path, what: str) -> None:
    """Every tensor in `names` is present (else one line naming the first missing one and all needed)."""
    missing = [n for n in names if n not in tensors]
    if missing:
        raise UserError(f"{path} lacks tensor {missing[0]!r} ({what} needs {', '.join(names)}); "
                        "the file is incomplete or of another architecture")


def check_shape(tensors: dict, name: str, shape: tuple, path: Path, why: str) -> None:
    got = tuple(tensors[name].shape)
    if got != tuple(shape):
        raise UserError(f"{path}: tensor {name!r} has shape {list(got)}; {why} needs {list(shape)}")


def config_int(cfg: dict, key: str, path: Path) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise UserError(f"{path}: {key!r} must be a positive integer, got {value!r}")
    return int(value)
