"""The grid: every (variant, dataset, seed) cell is trained once and scored by every task that
lists its dataset; results are written cell by cell, so an interrupted run resumes."""
import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmark import SUITE_VERSION
from benchmark.config import Preset
from benchmark.data import Dataset
from benchmark.datasets import build_dataset
from benchmark.errors import UserError
from benchmark.flops import match_n_latents, params_of
from benchmark.registry import DATASETS, TASKS, VARIANTS
from benchmark.task import get_task
from benchmark.results import ResultsFile, RunInfo, content_hash, make_rows
from benchmark.training import ModelCache, TrainConfig, TrainedModel, train_model


@dataclass
class RunOptions:
    preset: Preset
    variants: list[str] | None = None  # None: every registered variant
    tasks: list[str] | None = None  # None: every task of the preset
    seeds: list[int] | None = None  # None: the preset's seeds
    device: str = "auto"
    out_dir: Path = Path("results")
    data_root: Path | None = None
    download: bool = False
    force: bool = False
    progress: bool = True


@dataclass(frozen=True)
class Cell:
    variant: str
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

    def key(self, callbacks: list[str]) -> str:
        return content_hash(dict(self.__dict__, train=self.train.__dict__, callbacks=callbacks,
                                 suite_version=SUITE_VERSION))


@dataclass
class RunSummary:
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "skipped": 0, "error": 0, "resumed": 0})
    errors: list[str] = field(default_factory=list)

    def add(self, rows: list[dict]) -> None:
        for row in rows:
            if row["metric"] or row["status"] != "ok":
                self.counts[row["status"]] += 1
            if row["status"] == "error":
                self.errors.append(f"{row['task']} / {row['dataset']} / {row['variant']} / seed "
                                   f"{row['seed']}: {row['message']}")


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return device


def short_error(err: BaseException) -> str:
    """One line: the exception and where in the project it was raised."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "site-packages" not in f.filename]
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(err).__name__}: {err}{where}".replace("\n", " ")


class Runner:
    def __init__(self, options: RunOptions):
        self.options = options
        self.preset = options.preset
        self.device = resolve_device(options.device)
        self.out_dir = Path(options.out_dir)
        self.tasks = self._select_tasks()
        self.variants = options.variants or VARIANTS.names()
        for name in self.variants:
            VARIANTS.get(name)  # unknown names fail here, before anything is built or written
        self.seeds = options.seeds or self.preset.seeds
        self.dataset_names = sorted({d for t in self.tasks for d in self.preset.task_datasets(t)})
        for name in self.dataset_names:
            DATASETS.get(self.preset.datasets[name].get("kind", name))
        self.results = ResultsFile(self.out_dir / "results.csv")
        self.cache = ModelCache(self.out_dir / "cache")
        self.artifact_dir = self.out_dir / "plots" / "artifacts"
        self.info = RunInfo.new(self.preset.name, self.device)
        self.datasets: dict[str, Dataset] = {}

    def _select_tasks(self) -> list[str]:
        wanted = self.options.tasks or list(self.preset.tasks)
        for name in wanted:
            TASKS.get(name)
            if name not in self.preset.tasks:
                raise UserError(f"task {name!r} has no datasets in preset {self.preset.name!r}; "
                                f"its tasks are: {', '.join(self.preset.tasks)}")
        return wanted

    # ----- set-up -----
    def load_datasets(self) -> None:
        """Build every dataset up front: a missing one stops the run before anything is written."""
        for name in tqdm(self.dataset_names, desc="datasets", leave=False,
                         disable=not self.options.progress):
            dataset = build_dataset(name, self.preset.dataset_build_config(name),
                                    self.options.data_root, self.options.download)
            self.datasets[name] = dataset.to(self.device)

    def tasks_for(self, dataset: str, selected_only: bool = True) -> list:
        names = self.tasks if selected_only else [t for t in TASKS.names() if t in self.preset.tasks]
        return [get_task(t) for t in names if dataset in self.preset.task_datasets(t)]

    def model_spec(self, cell: Cell) -> ModelSpec:
        cls = VARIANTS.get(cell.variant)
        dataset = self.datasets[cell.dataset]
        hparams = self.preset.variant_hparams(cell.variant, cell.dataset)
        n_latents = self.preset.n_latents_for(cell.dataset)
        reference = hparams.pop("match_params_of", None)
        if reference is not None:
            n_latents = self._matched_n_latents(cls, reference, dataset, n_latents, hparams)
        n_latents, hparams = cls.configure(dataset, n_latents, hparams)
        return ModelSpec(cell.variant, n_latents, hparams, self.preset.train_config(cell.variant, cell.dataset),
                         cell.seed, dataset.config)

    def _matched_n_latents(self, cls, reference: str, dataset: Dataset, n_latents: int, hparams: dict) -> int:
        """Width giving `cls` the parameter count of `reference` at n_latents. Where the
        reference cannot run on this data (e.g. an image-only variant on vectors), no matching."""
        ref_cls = VARIANTS.get(reference)
        if set(ref_cls.requires) - dataset.capabilities():
            return n_latents
        ref_hparams = {k: v for k, v in self.preset.variant_hparams(reference, dataset.name).items()
                       if k != "match_params_of"}
        target = params_of(ref_cls, dataset.input_shape, n_latents, ref_hparams)
        return match_n_latents(cls, dataset.input_shape, hparams, target, cls.latent_step(dataset.input_shape))

    def config_hash(self, task: str, cell: Cell, spec_or_row: dict) -> str:
        return content_hash(dict(preset=self.preset.name, task=task, task_config=self.preset.task_config(task),
                                 dataset=cell.dataset, variant=cell.variant, seed=cell.seed,
                                 model=spec_or_row, suite_version=SUITE_VERSION))

    # ----- one cell -----
    def train(self, cell: Cell, spec: ModelSpec) -> TrainedModel:
        dataset = self.datasets[cell.dataset]
        callbacks = {t.name: t.epoch_callback for t in self.tasks_for(cell.dataset, selected_only=False)
                     if t.epoch_callback is not None}
        torch.manual_seed(cell.seed)
        model = VARIANTS.get(cell.variant)(dataset.input_shape, spec.n_latents, **spec.hparams).to(self.device)
        key = spec.key(sorted(callbacks))
        trained = self.cache.load(key, model)
        if trained is None:
            trained = train_model(model, dataset, spec.train, cell.seed, callbacks, self.options.progress)
            self.cache.save(key, trained)
        return trained

    def evaluate(self, task, trained: TrainedModel, cell: Cell) -> dict[str, float]:
        config = dict(self.preset.task_config(task.name), artifact_dir=self.artifact_dir,
                      model_name=cell.variant, seed=cell.seed)
        metrics = task.evaluate(trained, self.datasets[cell.dataset], config)
        check_metrics(task, metrics)
        return metrics

    def run_cell(self, cell: Cell, tasks: list, hashes: dict[str, str], spec) -> list[dict]:
        """Rows for `tasks` on one cell. Never raises: failures become `error` rows.
        `spec` is the cell's ModelSpec, or the exception raised while resolving it."""
        rows = []
        row = lambda task, **kw: make_rows(self.info, task=task.name, dataset=cell.dataset,  # noqa: E731
                                           variant=cell.variant, seed=cell.seed,
                                           config_hash=hashes[task.name], **kw)
        cls = VARIANTS.get(cell.variant)
        runnable = []
        for task in tasks:
            reason = task.skip_reason(cls, self.datasets[cell.dataset])
            if reason:
                rows += row(task, status="skipped", message=reason)
            else:
                runnable.append(task)
        if not runnable:
            return rows
        try:
            if isinstance(spec, Exception):
                raise spec
            trained = self.train(cell, spec)
        except Exception as err:  # a failing variant is an error row; the grid runs on
            return rows + [r for t in runnable for r in row(t, status="error", message=f"training: {short_error(err)}")]
        for task in runnable:
            try:
                rows += row(task, metrics=self.evaluate(task, trained, cell), directions=task.metrics)
            except Exception as err:
                rows += row(task, status="error", message=f"evaluation: {short_error(err)}")
        return rows

    def resolve(self, cell: Cell, tasks: list) -> tuple[ModelSpec | Exception, dict[str, str]]:
        """The cell's model spec (or why it cannot be built) and each task's config hash."""
        try:
            spec = self.model_spec(cell)
            key = dict(spec.__dict__, train=spec.train.__dict__)
        except Exception as err:  # reported as an error row by run_cell
            spec, key = err, {"unresolved": short_error(err)}
        return spec, {t.name: self.config_hash(t.name, cell, key) for t in tasks}

    # ----- the grid -----
    def cells(self) -> list[Cell]:
        return [Cell(v, d, s) for d in self.dataset_names for v in self.variants for s in self.seeds]

    def run(self) -> RunSummary:
        self.load_datasets()
        summary = RunSummary()
        finished = set() if self.options.force else self.results.finished_hashes()
        for cell in tqdm(self.cells(), desc="grid", disable=not self.options.progress):
            tasks = self.tasks_for(cell.dataset)
            spec, hashes = self.resolve(cell, tasks)
            todo = [t for t in tasks if hashes[t.name] not in finished]
            summary.counts["resumed"] += len(tasks) - len(todo)
            if todo:
                rows = self.run_cell(cell, todo, hashes, spec)
                self.results.write(rows)
                summary.add(rows)
        for rows in self.reference_rows(finished):
            self.results.write(rows)
            summary.add(rows)
        return summary

    def reference_rows(self, finished: set[str]):
        """Rows of the non-SAE references that some tasks define (e.g. pixel-space arithmetic)."""
        for task in (get_task(t) for t in self.tasks):
            for dataset_name in self.preset.task_datasets(task.name):
                dataset = self.datasets[dataset_name]
                if task.dataset_skip_reason(dataset):
                    continue
                for seed in self.seeds:
                    yield from self._reference_rows_for(task, dataset, seed, finished)

    def _reference_rows_for(self, task, dataset: Dataset, seed: int, finished: set[str]):
        config = dict(self.preset.task_config(task.name), artifact_dir=self.artifact_dir, seed=seed)
        try:
            references = task.reference_rows(dataset, config, seed)
        except Exception as err:
            cell = Cell("references", dataset.name, seed)
            yield make_rows(self.info, task=task.name, dataset=dataset.name, variant="references",
                            seed=seed, config_hash=self.config_hash(task.name, cell, {}),
                            status="error", message=short_error(err))
            return
        for name, metrics in references.items():
            cell = Cell(name, dataset.name, seed)
            config_hash = self.config_hash(task.name, cell, {"reference": name})
            if config_hash not in finished:
                check_metrics(task, metrics)
                yield make_rows(self.info, task=task.name, dataset=dataset.name, variant=name, seed=seed,
                                config_hash=config_hash, metrics=metrics, directions=task.metrics)


def check_metrics(task, metrics: dict[str, float]) -> None:
    """Every metric must be declared by the task (a typo would otherwise publish a new column)
    and finite (a NaN in a leaderboard is a bug, not a score)."""
    unknown = set(metrics) - set(task.metrics)
    if unknown:
        raise ValueError(f"task {task.name} returned undeclared metric(s) {sorted(unknown)}")
    bad = [name for name, value in metrics.items() if not math.isfinite(float(value))]
    if bad:
        raise ValueError(f"non-finite metric(s) {', '.join(bad)}")
