"""Planning the grid (SPEC sections 4 and 6): which models a run needs and what identifies them.

A cell is (variant, setting, dataset, seed): one model, trained (or, for a control, fitted)
once and scored by every task that lists the dataset. `setting` is one point of the variant's
sparsity sweep (the preset's `sweep:`), or of a control's target L0s. Everything that
determines a model goes into its `ModelSpec`, whose content hash keys the model cache; every
(task, cell) has a config hash, by which a re-run recognises finished work.
"""
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from benchmark import SUITE_VERSION
from benchmark.config import DEFAULT_SETTING, Preset, setting_label
from benchmark.control import is_control
from benchmark.flops import match_n_latents, params_of
from benchmark.registry import CONTROLS
from benchmark.results import content_hash
from benchmark.submission import resolve_variant
from benchmark.training.loop import TrainConfig
from benchmark.grid.twins import KEEP_TOP, base_name, is_k_sparse, is_twin, keep_top_levels

NO_TRAINING = TrainConfig(epochs=0, batch_size=1, lr=0.0)  # what a control's or a checkpoint's spec records


@dataclass(frozen=True)
class Cell:
    variant: str
    setting: str
    dataset: str
    seed: int


@dataclass
class ModelSpec:
    """Everything that determines a trained model: its content hash keys the cache."""

    variant: str
    n_latents: int
    hparams: dict
    train: TrainConfig
    seed: int
    dataset_config: dict
    source: str = ""  # hash of an external variant's file: an edited submission is a new model

    def identity(self) -> dict:
        """What the hashes see; `source` only for external variants."""
        fields = dict(self.__dict__, train=self.train.__dict__)
        if not self.source:
            del fields["source"]
        return fields

    def key(self, callbacks: list[str], init_seed: int | None = None) -> str:
        """The model cache's key; `init_seed` (a same-data twin's initialisation) only when given."""
        twin = {} if init_seed is None else {"init_seed": init_seed}
        return content_hash(dict(self.identity(), callbacks=callbacks, suite_version=SUITE_VERSION,
                                 code=training_code_digest(), **twin))


@functools.cache
def training_code_digest() -> str:
    """Hash of the code that builds and trains models (every built-in variant, control and
    dataset file, the base classes, the training loop and stacking): part of the model-cache key only, so that after an
    edit a `--force` run retrains rather than reloading weights the old code produced."""
    root = Path(__file__).resolve().parents[2]
    files = (sorted((root / "baselines").glob("*.py")) + sorted((root / "controls").glob("*.py"))
             + sorted((root / "benchmark" / "datasets").glob("*.py"))  # a changed draw is new data
             + sorted((root / "benchmark" / "training").glob("*.py"))
             + [root / "benchmark" / name for name in ("variant.py", "control.py", "data.py")])
    return content_hash({f"{f.parent.name}/{f.name}": hashlib.sha256(f.read_bytes()).hexdigest() for f in files})


def model_class(spec: str) -> type:
    """A control by name, else a variant (registered or external)."""
    return CONTROLS.get(spec) if spec in CONTROLS else resolve_variant(spec)


class Planner:
    """Settings, model specs and config hashes of a run, from its preset and datasets."""

    def __init__(self, preset: Preset, specs: dict[str, str], sources: dict[str, str], length: float = 1.0):
        self.preset = preset
        self.length = length  # training-length multiplier (the budget check trains at 2)
        self.specs = specs  # results name -> spec (registered name, control, or external spec)
        self.sources = sources  # results name -> hash of an external variant's file
        self._widths = {}  # matched widths, found once: every task and cell asks again

    def model_class(self, name: str) -> type:
        """The class of a variant, control or twin (a twin is its variant's class)."""
        name = base_name(name)
        return model_class(self.specs.get(name, name))

    def settings(self, name: str, dataset) -> dict[str, dict]:
        """{setting label: hyperparameters} of model `name` on `dataset`. A model that cannot
        run on the dataset has one setting (every task then writes its `skipped` row)."""
        cls = self.model_class(name)
        if set(cls.requires) - dataset.capabilities():
            return {DEFAULT_SETTING: {}}
        family = getattr(cls, "family_settings", None)  # checkpoints read as one sweep
        if family is not None:
            return family()
        if is_control(cls):
            base = dict(self.preset.controls.get(name) or {})
            targets = self.preset.l0_targets(dataset.name)
            return {setting_label(s): dict(base, **s) for s in cls.settings(targets, dataset)}
        settings = self.preset.settings(base_name(name), dataset.name)
        if is_twin(name) and not is_k_sparse(cls):  # read at the targets' sparsity (benchmark/grid/twins.py)
            first = next(iter(settings.values()))
            levels = keep_top_levels(self.preset.l0_targets(dataset.name))
            return {setting_label({KEEP_TOP: t}): dict(first, **{KEEP_TOP: t}) for t in levels}
        return settings

    def model_spec(self, cell: Cell, dataset) -> ModelSpec:
        cls = self.model_class(cell.variant)
        hparams = dict(self.settings(cell.variant, dataset)[cell.setting])
        keep_top = hparams.pop(KEEP_TOP, None)
        n_latents = self.preset.n_latents_for(cell.dataset)
        reference = hparams.pop("match_params_of", None)
        if reference is not None:
            n_latents = self._matched_n_latents(cls, reference, dataset, n_latents, hparams)
        n_latents, hparams = cls.configure(dataset, n_latents, hparams)
        if keep_top is not None:
            hparams[KEEP_TOP] = keep_top
        trains = getattr(cls, "trainable", True) and not is_twin(cell.variant)
        train = self.preset.train_config(cell.variant, cell.dataset, self.length) if trains else NO_TRAINING
        return ModelSpec(cell.variant, n_latents, hparams, train, cell.seed, dataset.config,
                         self.sources.get(base_name(cell.variant), ""))

    def _matched_n_latents(self, cls, reference: str, dataset, n_latents: int, hparams: dict) -> int:
        """Width giving `cls` the parameter count of `reference` at n_latents. Where the
        reference cannot run on this data (e.g. an image-only variant on vectors), no matching."""
        key = (f"{cls.__module__}.{cls.__qualname__}", reference, dataset.name, tuple(dataset.input_shape),
               n_latents, content_hash(hparams))  # strings: a Runner (and its planner) travels pickled
        if key not in self._widths:
            self._widths[key] = self._match_width(cls, reference, dataset, n_latents, hparams)
        return self._widths[key]

    def _match_width(self, cls, reference: str, dataset, n_latents: int, hparams: dict) -> int:
        ref_cls = self.model_class(reference)
        if set(ref_cls.requires) - dataset.capabilities():
            return n_latents
        ref_hparams = {k: v for k, v in self.preset.variant_hparams(reference, dataset.name).items()
                       if k != "match_params_of"}
        target = params_of(ref_cls, dataset.input_shape, n_latents, ref_hparams)
        return match_n_latents(cls, dataset.input_shape, hparams, target, cls.latent_step(dataset.input_shape))

    def config_hash(self, task: str, cell: Cell, model_identity: dict) -> str:
        return content_hash(dict(preset=self.preset.name, task=task, task_config=self.preset.task_config(task),
                                 dataset=cell.dataset, variant=cell.variant, setting=cell.setting,
                                 seed=cell.seed, model=model_identity, suite_version=SUITE_VERSION))
