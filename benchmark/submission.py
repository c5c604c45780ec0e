"""Variants by name: registered ones ("relu") and external submissions (SPEC section 2).

`resolve_variant(spec)` is the one place the harness turns a `--variant` argument into a class:
- a registered name, e.g. `relu`;
- `path/to/file.py:Class`: the file is imported (once per process) under a private module name;
- `package.module:Class`: imported like any module (the working directory is on the path).

An external class need not subclass `benchmark.variant.SAE`: any `torch.nn.Module` with `encode`,
`decode` and `loss` is accepted, and the SAE defaults (`atoms`, `after_step`, `init_from_data`,
`configure`, `latent_step`, `requires`, ...) fill in whatever it does not define. Its name in
results.csv is `file.py:Class` (the file's name without its folder, so a run resumes from any
working directory) or `module:Class`; the leaderboard tells external variants from references by
that ':'.

Two foreign prefixes come first (benchmark/interop, SPEC section 12):
- `checkpoint:DIR`: a trained SAELens, sparsify or dictionary_learning checkpoint, evaluated without
  training; named `ckpt:<folder name>` in results.csv, its identity the hash of the folder's files;
- `overcomplete:CLASS`: an SAE class of overcomplete, trained by our loop; named as given.

`--config FILE.yaml` gives external variants their hyperparameters (see `load_variant_config`).
"""
import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path

import yaml
from torch import nn

from benchmark.errors import UserError, short_error
from benchmark.registry import VARIANTS
from benchmark.variant import SAE

REQUIRED_METHODS = ("encode", "decode", "loss")
# SAE members an external nn.Module may lack; the adapter supplies SAE's defaults.
OPTIONAL_MEMBERS = ("requires", "input_dim", "forward", "latent_step", "configure", "init_from_data",
                    "after_step", "supports_inference_k", "set_inference_k", "atoms")
KNOWN_CAPABILITIES = {"image", "concepts"}

_resolved: dict[tuple[str, str], type] = {}  # (spec, source hash) -> class: a file is imported once per version


CHECKPOINT, OVERCOMPLETE = "checkpoint:", "overcomplete:"


def is_external(spec: str) -> bool:
    return ":" in spec


def foreign_kind(spec: str) -> str | None:
    """'checkpoint' or 'overcomplete' for the foreign prefixes, else None."""
    for prefix in (CHECKPOINT, OVERCOMPLETE):
        if spec.startswith(prefix):
            return prefix[:-1]
    return None


def _foreign_target(spec: str) -> str:
    target = spec.split(":", 1)[1]
    if not target:
        raise UserError(f"--variant {spec}: expected checkpoint:DIR or overcomplete:CLASS")
    return target


def _split(spec: str) -> tuple[str, str, bool]:
    """(file or module, class name, is it a file?). The class follows the *last* ':'."""
    target, _, class_name = spec.rpartition(":")
    if not target or not class_name.isidentifier():
        raise UserError(f"--variant {spec}: expected NAME, path/to/file.py:Class or package.module:Class")
    is_file = target.endswith(".py") or "/" in target or os.sep in target
    return target, class_name, is_file


def variant_name(spec: str) -> str:
    """The name in results.csv: `relu`, `file.py:Class` or `package.module:Class`."""
    if not is_external(spec):
        return spec
    if foreign_kind(spec) == "checkpoint":
        from benchmark.interop import checkpoint_name

        return checkpoint_name(_foreign_target(spec))
    if foreign_kind(spec):
        return spec
    target, class_name, is_file = _split(spec)
    return f"{Path(target).name}:{class_name}" if is_file else spec


def canonical_spec(spec: str) -> str:
    """The spec with an absolute file path, so a child process finds the same file."""
    if not is_external(spec):
        return spec
    if foreign_kind(spec) == "checkpoint":
        from benchmark.interop import canonical_target

        return f"{CHECKPOINT}{canonical_target(_foreign_target(spec))}"
    if foreign_kind(spec):
        return spec
    target, class_name, is_file = _split(spec)
    return f"{Path(target).resolve()}:{class_name}" if is_file else spec


def source_file(spec: str) -> Path | None:
    """The file defining an external variant (None for registered ones)."""
    if not is_external(spec) or foreign_kind(spec):
        return None
    target, _, is_file = _split(spec)
    if is_file:
        return Path(target).resolve()
    found = importlib.util.find_spec(target)
    return Path(found.origin) if found and found.origin else None


def source_hash(spec: str) -> str:
    """Hash of an external variant's source file, part of every config hash: an edited
    submission is re-run. (Files it imports are not hashed: use --force after editing those.)
    A checkpoint's is the hash of its files; an overcomplete class's, overcomplete's version and
    the adapter's source."""
    if foreign_kind(spec) == "checkpoint":
        from benchmark.interop import checkpoint_hash

        return checkpoint_hash(_foreign_target(spec))
    if foreign_kind(spec) == "overcomplete":
        from benchmark.interop.overcomplete import source_hash as adapter_hash

        return adapter_hash()
    path = source_file(spec)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path else ""


def resolve_variant(spec: str) -> type:
    """The class for a registered name or an external FILE:CLASS / module:Class.

    Every problem that can be seen without running the class (a missing file, a syntax error, no
    such class, not an nn.Module, a missing method) is one line of the UserError. A file edited
    since it was loaded is loaded again (a module:Class is imported once per process)."""
    if not is_external(spec):
        return VARIANTS.get(spec)
    if foreign_kind(spec) == "checkpoint":
        from benchmark.interop import checkpoint_class

        return checkpoint_class(_foreign_target(spec))
    if foreign_kind(spec) == "overcomplete":
        from benchmark.interop.overcomplete import overcomplete_variant

        return overcomplete_variant(_foreign_target(spec))
    key = (spec, _file_hash(spec))
    if key not in _resolved:
        cls, problems = _load_external(spec)
        if problems:
            if spec.split(".")[0] == "overcomplete":  # e.g. overcomplete.sae:TopKSAE
                problems.append(f"for overcomplete's SAE classes use --variant {OVERCOMPLETE}{spec.rpartition(':')[2]}")
            raise UserError("\n".join(f"{variant_name(spec)}: {p}" for p in problems))
        _resolved[key] = as_variant(cls, variant_name(spec))
    return _resolved[key]


def _file_hash(spec: str) -> str:
    if foreign_kind(spec):
        return ""
    target, _, is_file = _split(spec)
    path = Path(target)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if is_file and path.is_file() else ""


def _load_external(spec: str) -> tuple[type | None, list[str]]:
    target, class_name, is_file = _split(spec)
    try:
        module = _import_file(Path(target)) if is_file else _import_module(target)
    except UserError as err:
        return None, [str(err)]
    cls = getattr(module, class_name, None)
    if cls is None:
        found = sorted(n for n, obj in vars(module).items()
                       if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__)
        listing = f"; its nn.Module classes: {', '.join(found)}" if found else "; it defines no nn.Module class"
        return None, [f"{target} has no class {class_name!r}{listing}"]
    return cls, class_problems(cls)


def _import_file(path: Path):
    if not path.exists():
        raise UserError(f"file {path} does not exist")
    if path.suffix != ".py":
        raise UserError(f"{path} is not a Python file (.py)")
    path = path.resolve()
    version = hashlib.sha256(str(path).encode() + path.read_bytes()).hexdigest()[:12]
    module_name = f"_submission_{path.stem}_{version}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    # Its own folder goes on the path (last, so it shadows nothing) for helpers beside it.
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # before exec: dataclasses and pickling look it up
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as err:
        del sys.modules[module_name]
        raise UserError(f"syntax error in {path} line {err.lineno}: {err.msg}") from None
    except Exception as err:
        del sys.modules[module_name]
        raise UserError(f"importing {path} raised {short_error(err)}") from None
    return module


def _import_module(name: str):
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # `package.module` relative to where the user runs
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        raise UserError(f"no module named {err.name!r} (is it on PYTHONPATH?)") from None
    except SyntaxError as err:
        raise UserError(f"syntax error in {err.filename} line {err.lineno}: {err.msg}") from None
    except Exception as err:
        raise UserError(f"importing {name} raised {short_error(err)}") from None


def class_problems(cls) -> list[str]:
    """What is wrong with `cls` as a variant, seen without running it."""
    if not inspect.isclass(cls):
        return [f"{cls!r} is not a class"]
    if not issubclass(cls, nn.Module):
        return [f"{cls.__name__} is not a torch.nn.Module subclass"]
    problems = []
    for method in REQUIRED_METHODS:
        own = getattr(cls, method, None)
        if not callable(own) or own is getattr(SAE, method, None):
            problems.append(f"{cls.__name__} does not define {method}() (required: encode, decode, loss)")
    requires = getattr(cls, "requires", frozenset())
    if not isinstance(requires, (set, frozenset)) or set(requires) - KNOWN_CAPABILITIES:
        problems.append(f"{cls.__name__}.requires must be a set drawn from {sorted(KNOWN_CAPABILITIES)}; "
                        f"got {requires!r}")
    return problems


def as_variant(cls: type, name: str) -> type:
    """A subclass of `cls` named `name` (what skip messages and results call it). If `cls` is a
    plain nn.Module, the subclass also takes SAE's defaults for what `cls` lacks, and records
    `input_shape` and `n_latents` after `cls.__init__` if it did not."""
    namespace = {"name": name, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
                 "__doc__": cls.__doc__}
    if not issubclass(cls, SAE):
        for member in OPTIONAL_MEMBERS:
            # every nn.Module has a `forward` attribute: it is missing when it is Module's stub
            missing = cls.forward is nn.Module.forward if member == "forward" else not hasattr(cls, member)
            if missing:
                namespace[member] = SAE.__dict__[member]

        def __init__(self, input_shape, n_latents, **hparams):
            cls.__init__(self, input_shape, n_latents, **hparams)
            if not hasattr(self, "input_shape"):
                self.input_shape = tuple(int(s) for s in input_shape)
            if not hasattr(self, "n_latents"):
                self.n_latents = int(n_latents)

        namespace["__init__"] = __init__
    return type(cls.__name__, (cls,), namespace)


# ----- --config: hyperparameters of external variants -----
TRAIN_KEYS = {"epochs", "batch_size", "lr"}


def load_variant_config(path: Path, dataset_names: list[str], preset_name: str = "the preset") -> dict:
    """Read and validate a variant config YAML; every problem is one line of the UserError.

    Format (every key optional):

        l1_coeff: 0.3                  # constructor keyword arguments, on every dataset
        train: {epochs: 10, lr: 0.002} # overrides of the preset's training settings
        datasets:                      # overrides on some of the preset's datasets
          digits8: {l1_coeff: 0.05, train: {epochs: 20}}

    `match_params_of: NAME` (a registered variant) sizes n_latents to match NAME's parameter
    count, as in a preset. `train` and `datasets` are reserved: no hyperparameter may use them.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"--config {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"config {path}: malformed YAML{where}: {getattr(err, 'problem', err)}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise UserError(f"config {path}: must be a YAML mapping of hyperparameters")
    problems = []
    per_dataset = raw.get("datasets") or {}
    if not isinstance(per_dataset, dict) or not all(isinstance(v, dict) or v is None for v in per_dataset.values()):
        problems.append("'datasets' must map dataset names to mappings of hyperparameters")
        per_dataset = {}
    for dataset in per_dataset:
        if dataset not in dataset_names:
            known = ", ".join(dataset_names)
            problems.append(f"dataset {dataset!r} is not in preset {preset_name} (its datasets: {known})")
    entries = [("top level", raw)] + [(f"dataset {d!r}", v or {}) for d, v in per_dataset.items()]
    for where, entry in entries:
        train = entry.get("train") or {}
        if not isinstance(train, dict) or set(train) - TRAIN_KEYS:
            problems.append(f"{where}: 'train' must be a mapping with keys among {sorted(TRAIN_KEYS)}")
        reference = entry.get("match_params_of")
        if reference is not None and reference not in VARIANTS:
            problems.append(f"{where}: match_params_of {reference!r} is not a registered variant")
        if where != "top level" and "datasets" in entry:
            problems.append(f"{where}: 'datasets' cannot be nested")
    if problems:
        raise UserError("\n".join(f"config {path}: {p}" for p in problems))
    return {"variant": {k: v for k, v in raw.items() if k != "datasets"},
            "datasets": {d: dict(v or {}) for d, v in per_dataset.items()}}


def with_variant_config(preset, names: list[str], config: dict):
    """A copy of `preset` in which the variants `names` take the hyperparameters of `config`
    (exactly as if the preset listed them under `variants:` and its datasets' `variants:`)."""
    variants = dict(preset.variants, **{name: dict(config["variant"]) for name in names})
    datasets = {d: dict(entry) for d, entry in preset.datasets.items()}
    for dataset, overrides in config["datasets"].items():
        datasets[dataset]["variants"] = dict(datasets[dataset].get("variants") or {},
                                             **{name: dict(overrides) for name in names})
    return dataclasses.replace(preset, variants=variants, datasets=datasets)
