"""Presets (SPEC section 9): loading, validation, and the merged settings of one grid cell.

A preset YAML has these keys:

    description: one line
    seeds: [0, 1]
    n_latents: 256                      # default dictionary size
    train: {epochs: 8, batch_size: 256, lr: 0.001}
    datasets:                           # instance name -> builder parameters
      patches32: {n_train: 6000}
      digits8:                          # harness keys beside the builder's own:
        n_latents: 128                  #   dictionary size on this dataset
        seeds: [0, 1, 2]                #   its own seeds (default: the preset's)
        train: {epochs: 20}             #   training overrides on this dataset
        variants: {relu: {l1_coeff: 1}} #   hyperparameter overrides on this dataset
      correlated-rho0.6: {kind: correlated, rho: 0.6}   # `kind` picks the builder
    tasks:                              # task -> its settings; `datasets` lists where it runs
      reconstruction: {datasets: [patches32, digits8]}
    variants:                           # variant -> hyperparameters (`train` overrides allowed)
      relu: {l1_coeff: 0.3, sweep: [{l1_coeff: 0.1}, {l1_coeff: 0.3}]}
    comparison: {l0_targets: [8, 16, 32], headline_l0: 16}   # matched-L0 targets (SPEC 6)
    controls: {pca: {}, random-dict: {n_atoms: 1024}}         # untrained reference bases
    cell_timeout: 600                   # optional: seconds one cell may take (--cell-timeout)

`sweep` (on a variant, or on a variant under a dataset's `variants`, which replaces it there) is
the sparsity axis: a list of hyperparameter settings, each merged over the variant's other
hyperparameters and trained as its own model. A dataset may override `l0_targets` and
`headline_l0` (e.g. the synthetic dictionaries, whose true L0 is 4). Controls are fitted at
every target L0 of a dataset (see controls/).
"""
import inspect
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmark.errors import UserError
from benchmark.registry import CONTROLS, TASKS, VARIANTS
from benchmark.training.loop import MIN_PLATEAU_STEPS, SCHEDULES, TrainConfig

PRESET_DIR = Path(__file__).parent / "presets"
TOP_LEVEL_KEYS = {"description", "seeds", "n_latents", "train", "datasets", "tasks", "variants",
                  "cell_timeout", "comparison", "controls", "budget_check", "evaluation"}
BUDGET_CHECK_KEYS = {"length", "seeds"}
EVALUATION_KEYS = {"seeds"}
HARNESS_DATASET_KEYS = {"n_latents", "train", "variants", "l0_targets", "headline_l0", "seeds", "budget_check_seeds"}
TRAIN_KEYS = {"epochs", "batch_size", "lr", "max_steps", "min_steps", "check_every", "schedule",
              "decay_fraction", "stream"}
REQUIRED_TRAIN_KEYS = {"batch_size", "lr"}  # and a cap: epochs or max_steps
COMPARISON_KEYS = {"l0_targets", "headline_l0"}
DEFAULT_COMPARISON = {"l0_targets": [8, 16, 32], "headline_l0": 16}
HARNESS_VARIANT_KEYS = {"train", "sweep", "match_params_of"}
DEFAULT_SETTING = "default"  # the label of a variant's only setting when it has no sweep


def setting_label(overrides: dict) -> str:
    """A short, stable name of one sweep setting, e.g. "k=16" or "l1_coeff=0.3"."""
    if not overrides:
        return DEFAULT_SETTING
    return ",".join(f"{k}={overrides[k]}" for k in sorted(overrides))


@dataclass
class Preset:
    name: str
    description: str
    seeds: list[int]
    n_latents: int
    train: dict
    datasets: dict[str, dict]
    tasks: dict[str, dict]
    variants: dict[str, dict]
    cell_timeout: float | None = None  # None: the runner's default
    comparison: dict = None  # l0_targets, headline_l0
    controls: dict = None  # control name -> its parameters
    budget_check: dict | None = None  # {length: 2, seeds: 1}: headlines re-trained longer; None: none
    eval_seeds: int = 1  # `evaluation: {seeds: n}`: evaluation seeds of eval-seeded tasks' headlines

    def __post_init__(self):
        self.comparison = dict(DEFAULT_COMPARISON, **(self.comparison or {}))
        self.controls = dict(self.controls or {})

    def dataset_build_config(self, dataset: str) -> dict:
        return {k: v for k, v in self.datasets[dataset].items() if k not in HARNESS_DATASET_KEYS}

    def task_config(self, task: str) -> dict:
        return {k: v for k, v in self.tasks[task].items() if k != "datasets"}

    def task_datasets(self, task: str) -> list[str]:
        return list(self.tasks[task]["datasets"])

    def seeds_for(self, dataset: str) -> list[int]:
        """The dataset's own `seeds` (e.g. more on a task's headline dataset), else the preset's."""
        return list(self.datasets[dataset].get("seeds", self.seeds))

    def budget_check_seeds(self, dataset: str) -> int:
        """How many of the dataset's seeds its budget check re-trains: its own
        `budget_check_seeds` (where training is cheap, the paired test at 2x on every seed), else
        the preset's `budget_check: {seeds}` (also for a dataset the preset does not have)."""
        own = self.datasets.get(dataset, {}).get("budget_check_seeds")
        return int(own if own is not None else (self.budget_check or {}).get("seeds", 1))

    def n_latents_for(self, dataset: str) -> int:
        return int(self.datasets[dataset].get("n_latents", self.n_latents))

    def _variant_entries(self, variant: str, dataset: str) -> list[dict]:
        overrides = self.datasets[dataset].get("variants", {}) or {}
        return [self.variants.get(variant) or {}, overrides.get(variant) or {}]

    def variant_hparams(self, variant: str, dataset: str) -> dict:
        """Hyperparameters without the sweep (and without `train`)."""
        merged = {}
        for entry in self._variant_entries(variant, dataset):
            merged.update({k: v for k, v in entry.items() if k not in ("train", "sweep")})
        return merged

    def sweep(self, variant: str, dataset: str) -> list[dict]:
        """The variant's sparsity settings on `dataset` (a dataset's sweep replaces the
        variant's); [{}] when it has none."""
        sweep = [{}]
        for entry in self._variant_entries(variant, dataset):
            sweep = [dict(s) for s in entry.get("sweep", [])] or sweep
        return sweep

    def settings(self, variant: str, dataset: str) -> dict[str, dict]:
        """{setting label: hyperparameters of that setting}."""
        base = self.variant_hparams(variant, dataset)
        return {setting_label(s): dict(base, **s) for s in self.sweep(variant, dataset)}

    def l0_targets(self, dataset: str) -> list[float]:
        return [float(t) for t in self.datasets[dataset].get("l0_targets", self.comparison["l0_targets"])]

    def headline_l0(self, dataset: str) -> float:
        return float(self.datasets[dataset].get("headline_l0", self.comparison["headline_l0"]))

    def train_settings(self, variant: str, dataset: str) -> dict:
        """The merged `train` mapping: preset, then dataset, then variant entries; the most
        specific cap wins (an entry's `epochs` replaces an inherited `max_steps`, and back)."""
        merged = dict(self.train)
        entries = [self.datasets[dataset].get("train")] + [e.get("train") for e in self._variant_entries(variant, dataset)]
        for entry in filter(None, entries):
            if {"epochs", "max_steps"} & set(entry):
                merged.pop("epochs", None)
                merged.pop("max_steps", None)
            merged.update(entry)
        return merged

    def train_config(self, variant: str, dataset: str, length: float = 1.0) -> TrainConfig:
        merged = self.train_settings(variant, dataset)
        return TrainConfig(length=length, **merged)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _fail(source: str, why: str):
    raise UserError(f"preset {source}: {why}")


def _check_train(source: str, where: str, train) -> None:
    if not isinstance(train, dict) or set(train) - TRAIN_KEYS:
        _fail(source, f"{where} 'train' must be a mapping with keys among {sorted(TRAIN_KEYS)}")
    for key in ("epochs", "max_steps", "min_steps", "check_every", "batch_size"):
        value = train.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            _fail(source, f"{where} train '{key}' must be a positive integer, got {value!r}")
    lr = train.get("lr")
    if lr is not None and (not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr >= 0):
        _fail(source, f"{where} train 'lr' must be a number >= 0 (0: a model that never moves), got {lr!r}")
    cap = train.get("max_steps")
    if cap is not None and cap < max(MIN_PLATEAU_STEPS, train.get("min_steps", TrainConfig.min_steps)):
        _fail(source, f"{where} train 'max_steps' ({cap}) is below what the plateau criterion needs "
                      f"(min_steps {train.get('min_steps', TrainConfig.min_steps)}, and at least {MIN_PLATEAU_STEPS})")
    if "schedule" in train and train["schedule"] not in SCHEDULES:
        _fail(source, f"{where} train 'schedule' must be one of {list(SCHEDULES)}, got {train['schedule']!r}")
    fraction = train.get("decay_fraction")
    if fraction is not None and (not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1):
        _fail(source, f"{where} train 'decay_fraction' must be between 0 and 1, got {fraction!r}")
    if "stream" in train and not isinstance(train["stream"], bool):
        _fail(source, f"{where} train 'stream' must be true or false, got {train['stream']!r}")


def _check_targets(source: str, where: str, entry: dict) -> None:
    targets = entry.get("l0_targets")
    if targets is not None and (not isinstance(targets, list) or not targets or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 for t in targets)):
        _fail(source, f"{where} 'l0_targets' must be a non-empty list of positive numbers, got {targets!r}")
    headline = entry.get("headline_l0")
    if headline is not None and (not isinstance(headline, (int, float)) or isinstance(headline, bool) or headline <= 0):
        _fail(source, f"{where} 'headline_l0' must be a positive number, got {headline!r}")


def constructor_params(cls) -> set[str] | None:
    """The keyword arguments a variant's constructor accepts beyond (input_shape, n_latents);
    None when it takes **kwargs (anything goes)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return set(params) - {"self", "input_shape", "n_latents"}


def _check_variant_entry(source: str, where: str, variant: str, entry: dict) -> None:
    _check_train(source, where, entry.get("train", {}) or {})
    accepted = constructor_params(VARIANTS.get(variant))
    unknown = lambda keys: sorted(set(keys) - accepted - HARNESS_VARIANT_KEYS) if accepted is not None else []  # noqa: E731
    if unknown(entry):
        _fail(source, f"{where} sets unknown hyperparameter(s) {unknown(entry)} of {variant}; "
                      f"it accepts: {', '.join(sorted(accepted))}")
    if "sweep" not in entry:
        return
    sweep = entry["sweep"]
    if not isinstance(sweep, list) or not sweep or not all(isinstance(s, dict) and s for s in sweep):
        _fail(source, f"{where} 'sweep' must be a non-empty list of non-empty mappings of hyperparameters")
    for setting in sweep:
        bad = sorted(set(setting) & HARNESS_VARIANT_KEYS) or unknown(setting)
        if bad:
            _fail(source, f"{where} sweep entry {setting} sets unknown hyperparameter(s) {bad} of {variant}; "
                          f"it accepts: {', '.join(sorted(accepted or []))}")
    labels = [setting_label(s) for s in sweep]
    if len(set(labels)) != len(labels):
        _fail(source, f"{where} 'sweep' repeats a setting: {labels}")


def _mapping(source: str, raw: dict, key: str) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, dict) or v is None for v in value.values()):
        _fail(source, f"'{key}' must be a mapping of names to mappings")
    return {name: dict(v or {}) for name, v in value.items()}


def parse_preset(text: str, name: str, source: str) -> Preset:
    """Parse and validate a preset; every problem is one UserError line naming the fix."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        _fail(source, f"malformed YAML{where}: {getattr(err, 'problem', err)}")
    if not isinstance(raw, dict):
        _fail(source, "must be a YAML mapping")
    unknown = set(raw) - TOP_LEVEL_KEYS
    if unknown:
        _fail(source, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_LEVEL_KEYS)}")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        _fail(source, "'seeds' must be a non-empty list of integers")
    train = raw.get("train") or {}
    _check_train(source, "top-level", train)
    if REQUIRED_TRAIN_KEYS - set(train) or not {"epochs", "max_steps"} & set(train):
        _fail(source, f"'train' must set {sorted(REQUIRED_TRAIN_KEYS)} and a cap, 'epochs' or 'max_steps'")
    datasets, tasks, variants = (_mapping(source, raw, k) for k in ("datasets", "tasks", "variants"))
    for dataset, entry in datasets.items():
        _check_train(source, f"dataset {dataset!r}", entry.get("train", {}) or {})
        _check_targets(source, f"dataset {dataset!r}", entry)
        dataset_seeds = entry.get("seeds", seeds)
        if not isinstance(dataset_seeds, list) or not dataset_seeds or not all(isinstance(s, int) for s in dataset_seeds):
            _fail(source, f"dataset {dataset!r} 'seeds' must be a non-empty list of integers")
        check_seeds = entry.get("budget_check_seeds", 1)
        if not isinstance(check_seeds, int) or isinstance(check_seeds, bool) or check_seeds < 1:
            _fail(source, f"dataset {dataset!r} 'budget_check_seeds' must be a positive integer")
        for variant, overrides in (entry.get("variants", {}) or {}).items():
            _check_variant_entry(source, f"dataset {dataset!r} variant {variant!r}", variant, overrides or {})
    for variant, hparams in variants.items():
        _check_variant_entry(source, f"variant {variant!r}", variant, hparams)
    comparison = raw.get("comparison") or {}
    if not isinstance(comparison, dict) or set(comparison) - COMPARISON_KEYS:
        _fail(source, f"'comparison' must be a mapping with keys among {sorted(COMPARISON_KEYS)}")
    _check_targets(source, "'comparison'", comparison)
    controls = _mapping(source, raw, "controls")
    for control in controls:
        CONTROLS.get(control)
    for task, entry in tasks.items():
        TASKS.get(task)
        listed = entry.get("datasets")
        if not isinstance(listed, list) or not listed:
            _fail(source, f"task {task!r} needs a non-empty 'datasets' list")
        missing = [d for d in listed if d not in datasets]
        if missing:
            _fail(source, f"task {task!r} names dataset(s) {missing} not defined under 'datasets'")
    budget = raw.get("budget_check")
    if budget is not None and (not isinstance(budget, dict) or set(budget) - BUDGET_CHECK_KEYS
                               or not isinstance(budget.get("length", 2), (int, float)) or budget.get("length", 2) <= 1
                               or not isinstance(budget.get("seeds", 1), int) or budget.get("seeds", 1) < 1):
        _fail(source, "'budget_check' must be a mapping {length: a number > 1, seeds: a positive integer}")
    evaluation = raw.get("evaluation", {})
    if (not isinstance(evaluation, dict) or set(evaluation) - EVALUATION_KEYS
            or not isinstance(evaluation.get("seeds", 1), int) or evaluation.get("seeds", 1) < 1):
        _fail(source, "'evaluation' must be a mapping {seeds: a positive integer}")
    cell_timeout = raw.get("cell_timeout")
    if cell_timeout is not None and (not isinstance(cell_timeout, (int, float)) or cell_timeout <= 0):
        _fail(source, "'cell_timeout' must be a positive number of seconds")
    n_latents = raw.get("n_latents", 256)
    if not isinstance(n_latents, int) or n_latents < 1:
        _fail(source, "'n_latents' must be a positive integer")
    return Preset(
        name=name,
        description=str(raw.get("description", "")),
        seeds=seeds,
        n_latents=n_latents,
        train=train,
        datasets=datasets,
        tasks=tasks,
        variants=variants,
        cell_timeout=cell_timeout,
        comparison=comparison,
        controls=controls,
        budget_check=None if budget is None else {"length": float(budget.get("length", 2)),
                                                  "seeds": int(budget.get("seeds", 1))},
        eval_seeds=int(evaluation.get("seeds", 1)),
    )


def is_preset_file(name_or_path: str) -> bool:
    """Whether `--preset` names a YAML file (else a packaged preset)."""
    return Path(name_or_path).suffix in {".yaml", ".yml"}


def load_preset(name_or_path: str, overrides: list[str] | tuple = ()) -> Preset:
    """A preset by name (benchmark/presets/NAME.yaml) or by path to a YAML file, with `overrides`
    (`KEY.PATH=VALUE`, see `override`) applied; an overridden preset is named after them, so its
    rows never mix with the preset's own."""
    path = Path(name_or_path)
    if not is_preset_file(name_or_path):
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise UserError(f"unknown preset {name_or_path!r}; known: {', '.join(preset_names())} (or a path to a .yaml file)")
    elif not path.exists():
        raise UserError(f"preset file {path} does not exist")
    text = path.read_text()
    preset = parse_preset(text, name=path.stem, source=str(path))
    if not overrides:
        return preset
    raw = yaml.safe_load(text)
    for item in overrides:
        override(raw, item, preset)
    raw["description"] = f"{preset.description} With --set {' '.join(overrides)}."
    name = "+".join([path.stem, *overrides])
    return parse_preset(yaml.safe_dump(raw, sort_keys=False), name=name, source=f"{path} with --set")


NAMED_ENTRIES = ("datasets", "tasks", "controls")  # --set changes their entries, never adds one on its way


def key_path(raw: dict, key: str) -> list[str]:
    """KEY.PATH's parts. A named entry's name may hold dots (`datasets.correlated-rho0.9.train.lr`):
    the longest name the preset has is taken, so such an entry can be changed too."""
    parts = key.split(".")
    names = raw.get(parts[0]) if parts[0] in NAMED_ENTRIES else None
    if isinstance(names, dict):
        for end in range(len(parts) - 1, 2, -1):  # longest first; a single part needs no joining
            if ".".join(parts[1:end]) in names:
                return [parts[0], ".".join(parts[1:end]), *parts[end:]]
    return parts


def override(raw: dict, item: str, preset: Preset) -> None:
    """Set `KEY.PATH=VALUE` in the preset's YAML mapping `raw` (VALUE read as YAML: 128, 0.004,
    [3, 6], true). Missing mappings on the way are made (a dataset's first `train` setting),
    except a new dataset, task or control: a misspelt name must not pass for a new, unused one."""
    key, equals, text = item.partition("=")
    parts = key_path(raw, key)
    if not equals or not all(parts):
        raise UserError(f"--set wants KEY.PATH=VALUE (e.g. datasets.synth.train.batch_size=128), got {item!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise UserError(f"--set {item}: {text!r} is not a YAML value") from None
    node = raw
    for depth, part in enumerate(parts[:-1]):
        if depth == 1 and parts[0] in NAMED_ENTRIES and part not in node:
            known = ", ".join(getattr(preset, parts[0])) or "none"
            raise UserError(f"--set {item}: preset {preset.name!r} has no {parts[0][:-1]} {part!r}; its {parts[0]}: {known}")
        child = node.get(part)
        if child is None:
            child = {}
        if not isinstance(child, dict):
            raise UserError(f"--set {item}: {'.'.join(parts[:depth + 1])} is {child!r}, not a mapping")
        # A copy on the way down: YAML merge keys (<<: *correlated) share nested mappings between
        # entries, and a change to one dataset's `train` must not reach its siblings'.
        node[part] = dict(child)
        node = node[part]
    node[parts[-1]] = value
