"""The grid: every (variant, dataset, seed) cell is trained once and scored by every task that
lists its dataset; results are written cell by cell, so an interrupted run resumes.

Each cell is trained and scored in a child process with a time limit (benchmark/isolation.py):
an exception, a crash, a NaN or a timeout becomes an `error` row and the grid runs on. Only this
(parent) process writes results.csv. External variants (FILE.py:Class) are checked against the
contract before anything is trained (benchmark/contract.py).
"""
import copy
import functools
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmark import SUITE_VERSION
from benchmark.config import Preset
from benchmark.data import Dataset
from benchmark.datasets import build_dataset
from benchmark.contract import check_on_dataset, merge_by_dataset
from benchmark.errors import UserError, short_error
from benchmark.flops import match_n_latents, params_of
from benchmark.isolation import Job, run_in_process, run_jobs, start_method
from benchmark.registry import DATASETS, TASKS, VARIANTS
from benchmark.submission import (canonical_spec, is_external, load_variant_config, resolve_variant,
                                  source_hash, variant_name, with_variant_config)
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
    variant_config: Path | None = None  # --config: hyperparameters of the external variants
    cell_timeout: float | None = None  # seconds per cell; None: the preset's, else DEFAULT_CELL_TIMEOUT
    isolate: bool = True  # False: cells run in this process (debugging; no time limit)
    jobs: int | None = None  # cells run at the same time (each child computes with one CPU thread)
    start_method: str | None = None  # None: 'fork' on CPU, 'spawn' on CUDA (tests force 'spawn')


DEFAULT_CELL_TIMEOUT = 600.0


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
    source: str = ""  # hash of an external variant's file: an edited submission is a new model

    def identity(self) -> dict:
        """What the hashes see; `source` only for external variants, so that adding it left
        the hashes of registered variants (and every existing results.csv) unchanged."""
        fields = dict(self.__dict__, train=self.train.__dict__)
        if not self.source:
            del fields["source"]
        return fields

    def key(self, callbacks: list[str]) -> str:
        return content_hash(dict(self.identity(), callbacks=callbacks, suite_version=SUITE_VERSION,
                                 code=training_code_digest()))


@functools.cache
def training_code_digest() -> str:
    """Hash of the code that builds and trains models (every built-in variant file, the variant
    base class, the training loop): part of the model-cache key only, so that after an edit a
    `--force` run retrains rather than reloading weights the old code produced."""
    root = Path(__file__).resolve().parents[1]
    files = sorted((root / "baselines").glob("*.py")) + [root / "benchmark" / "training.py",
                                                         root / "benchmark" / "variant.py"]
    return content_hash({f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files})


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


def default_jobs(device: str) -> int:
    """One cell per available core on the CPU (each child computes with one thread, so the
    cores are used without oversubscription); one at a time on a GPU, which a cell fills."""
    if device == "cuda":
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return device


class Runner:
    def __init__(self, options: RunOptions):
        self.options = options
        self.preset = options.preset
        self.device = resolve_device(options.device)
        self.out_dir = Path(options.out_dir)
        self.tasks = self._select_tasks()
        self.variant_specs = self._resolve_variants(options.variants or VARIANTS.names())
        self.variants = list(self.variant_specs)
        self.sources = {name: source_hash(spec) for name, spec in self.variant_specs.items() if is_external(spec)}
        if options.variant_config is not None:
            self._apply_variant_config(options.variant_config)
        self.seeds = options.seeds or self.preset.seeds
        self.dataset_names = sorted({d for t in self.tasks for d in self.preset.task_datasets(t)})
        for name in self.dataset_names:
            DATASETS.get(self.preset.datasets[name].get("kind", name))
        self.results = ResultsFile(self.out_dir / "results.csv")
        self.cache = ModelCache(self.out_dir / "cache")
        self.artifact_dir = self.out_dir / "plots" / "artifacts"
        self.info = RunInfo.new(self.preset.name, self.device)
        self.datasets: dict[str, Dataset] = {}  # on the CPU: children take theirs to the device
        self._on_device: dict[str, Dataset] = {}
        self.cell_timeout = float(options.cell_timeout or getattr(self.preset, "cell_timeout", None)
                                  or DEFAULT_CELL_TIMEOUT)
        self.jobs = default_jobs(self.device) if options.jobs is None else options.jobs
        if self.cell_timeout <= 0 or self.jobs < 1:
            raise UserError("--cell-timeout must be positive and --jobs at least 1")

    def _resolve_variants(self, specs: list[str]) -> dict[str, str]:
        """{results name: spec}; every unknown name or unloadable submission is one line of
        the UserError, before anything is built or written."""
        found, problems = {}, []
        for spec in specs:
            try:
                resolve_variant(canonical_spec(spec))
            except UserError as err:
                problems += str(err).splitlines()
                continue
            name = variant_name(spec)
            if name in found and found[name] != canonical_spec(spec):
                problems.append(f"{found[name]} and {canonical_spec(spec)} would both be named {name!r} in "
                                "results; rename one of the files")
            found[name] = canonical_spec(spec)
        if problems:
            raise UserError("\n".join(problems))
        return found

    def _apply_variant_config(self, path: Path) -> None:
        external = [name for name, spec in self.variant_specs.items() if is_external(spec)]
        if not external:
            raise UserError("--config sets the hyperparameters of external variants "
                            "(--variant FILE.py:Class); none was given")
        config = load_variant_config(path, list(self.preset.datasets), repr(self.preset.name))
        self.preset = with_variant_config(self.preset, external, config)

    def variant_class(self, name: str) -> type:
        return resolve_variant(self.variant_specs.get(name, name))

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
            self.datasets[name] = build_dataset(name, self.preset.dataset_build_config(name),
                                                self.options.data_root, self.options.download)

    def on_device(self, name: str) -> Dataset:
        """The dataset on the run's device (the same tensors on the CPU), moved once per process."""
        if name not in self._on_device:
            self._on_device[name] = self.datasets[name].to(self.device)
        return self._on_device[name]

    def for_child(self, dataset_names: list[str]) -> "Runner":
        """A shallow copy holding only the datasets a child needs (what 'spawn' must pickle)."""
        child = copy.copy(self)
        child.datasets = {name: self.datasets[name] for name in dataset_names}
        child._on_device = {}
        return child

    def tasks_for(self, dataset: str, selected_only: bool = True) -> list:
        names = self.tasks if selected_only else [t for t in TASKS.names() if t in self.preset.tasks]
        return [get_task(t) for t in names if dataset in self.preset.task_datasets(t)]

    def model_spec(self, cell: Cell) -> ModelSpec:
        cls = self.variant_class(cell.variant)
        dataset = self.datasets[cell.dataset]
        hparams = self.preset.variant_hparams(cell.variant, cell.dataset)
        n_latents = self.preset.n_latents_for(cell.dataset)
        reference = hparams.pop("match_params_of", None)
        if reference is not None:
            n_latents = self._matched_n_latents(cls, reference, dataset, n_latents, hparams)
        n_latents, hparams = cls.configure(dataset, n_latents, hparams)
        return ModelSpec(cell.variant, n_latents, hparams, self.preset.train_config(cell.variant, cell.dataset),
                         cell.seed, dataset.config, self.sources.get(cell.variant, ""))

    def _matched_n_latents(self, cls, reference: str, dataset: Dataset, n_latents: int, hparams: dict) -> int:
        """Width giving `cls` the parameter count of `reference` at n_latents. Where the
        reference cannot run on this data (e.g. an image-only variant on vectors), no matching."""
        ref_cls = self.variant_class(reference)
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
        dataset = self.on_device(cell.dataset)
        callbacks = {t.name: t.epoch_callback for t in self.tasks_for(cell.dataset, selected_only=False)
                     if t.epoch_callback is not None}
        torch.manual_seed(cell.seed)
        model = self.variant_class(cell.variant)(dataset.input_shape, spec.n_latents, **spec.hparams).to(self.device)
        key = spec.key(sorted(callbacks))
        trained = self.cache.load(key, model)
        if trained is None:
            progress = self.options.progress and self.jobs == 1  # parallel bars would garble
            trained = train_model(model, dataset, spec.train, cell.seed, callbacks, progress)
            self.cache.save(key, trained)
        return trained

    def evaluate(self, task, trained: TrainedModel, cell: Cell) -> dict[str, float]:
        config = dict(self.preset.task_config(task.name), artifact_dir=self.artifact_dir,
                      model_name=cell.variant, seed=cell.seed)
        metrics = task.evaluate(trained, self.on_device(cell.dataset), config)
        check_metrics(task, metrics)
        return metrics

    def row_maker(self, cell: Cell, hashes: dict[str, str]):
        return lambda task, **kw: make_rows(self.info, task=task.name, dataset=cell.dataset,  # noqa: E731
                                            variant=cell.variant, seed=cell.seed,
                                            config_hash=hashes[task.name], **kw)

    def split_skipped(self, cell: Cell, tasks: list, hashes: dict[str, str]) -> tuple[list[dict], list]:
        """(`skipped` rows of the tasks that cannot score this cell, the tasks that can)."""
        row, rows, runnable = self.row_maker(cell, hashes), [], []
        cls = self.variant_class(cell.variant)
        for task in tasks:
            reason = task.skip_reason(cls, self.datasets[cell.dataset])
            if reason:
                rows += row(task, status="skipped", message=reason)
            else:
                runnable.append(task)
        return rows, runnable

    def error_rows(self, cell: Cell, tasks: list, hashes: dict[str, str], message: str) -> list[dict]:
        row = self.row_maker(cell, hashes)
        return [r for task in tasks for r in row(task, status="error", message=message)]

    def train_and_evaluate(self, cell: Cell, tasks: list, hashes: dict[str, str], spec: ModelSpec) -> list[dict]:
        """Rows for `tasks` on one cell (run in the child). Never raises: failures become `error`
        rows."""
        try:
            trained = self.train(cell, spec)
        except Exception as err:  # a failing variant is an error row; the grid runs on
            return self.error_rows(cell, tasks, hashes, f"training: {short_error(err)}")
        rows, row = [], self.row_maker(cell, hashes)
        for task in tasks:
            try:
                rows += row(task, metrics=self.evaluate(task, trained, cell), directions=task.metrics)
            except Exception as err:
                rows += row(task, status="error", message=f"evaluation: {short_error(err)}")
        return rows

    def resolve(self, cell: Cell, tasks: list) -> tuple[ModelSpec | Exception, dict[str, str]]:
        """The cell's model spec (or why it cannot be built) and each task's config hash."""
        try:
            spec = self.model_spec(cell)
            key = spec.identity()
        except Exception as err:  # written as the cell's error rows by _cell_jobs
            spec, key = err, {"unresolved": short_error(err)}
        return spec, {t.name: self.config_hash(t.name, cell, key) for t in tasks}

    # ----- the grid -----
    def cells(self) -> list[Cell]:
        return [Cell(v, d, s) for d in self.dataset_names for v in self.variants for s in self.seeds]

    def run(self) -> RunSummary:
        self.load_datasets()
        self.check_submissions()
        summary = RunSummary()
        finished = set() if self.options.force else self.results.finished_hashes()
        cells = self.cells()
        with tqdm(total=len(cells), desc="grid", disable=not self.options.progress) as bar:
            for job, outcome in self._execute(self._cell_jobs(cells, finished, summary, bar)):
                cell, skipped, runnable, hashes = job.key
                if outcome.error is None:
                    rows = outcome.value
                else:
                    hint = "; raise --cell-timeout" if outcome.error.startswith("timed out") else ""
                    rows = self.error_rows(cell, runnable, hashes, outcome.error + hint)
                self._write(skipped + rows, summary)
                bar.update()
        for rows in self.reference_rows(finished):
            self._write(rows, summary)
        return summary

    def _write(self, rows: list[dict], summary: RunSummary) -> None:
        self.results.write(rows)
        summary.add(rows)

    def _execute(self, jobs):
        if not self.options.isolate:
            return run_in_process(jobs)
        method = self.options.start_method or start_method(self.device)
        return run_jobs(jobs, timeout=self.cell_timeout, method=method, parallel=self.jobs)

    def _cell_jobs(self, cells: list[Cell], finished: set[str], summary: RunSummary, bar):
        """A child-process job per cell that has something to train; the rows of the others
        (finished, skipped, or unresolvable) are written here directly."""
        for cell in cells:
            tasks = self.tasks_for(cell.dataset)
            spec, hashes = self.resolve(cell, tasks)
            todo = [t for t in tasks if hashes[t.name] not in finished]
            summary.counts["resumed"] += len(tasks) - len(todo)
            skipped, runnable = self.split_skipped(cell, todo, hashes) if todo else ([], [])
            if isinstance(spec, Exception) and runnable:
                skipped += self.error_rows(cell, runnable, hashes, f"training: {short_error(spec)}")
                runnable = []
            if runnable:
                child = self if not self.options.isolate else self.for_child([cell.dataset])
                yield Job((cell, skipped, runnable, hashes), _cell_job,
                          (child, cell, [t.name for t in runnable], hashes, spec))
            else:
                if skipped:
                    self._write(skipped, summary)
                bar.update()

    # ----- the contract check of external variants -----
    def check_submissions(self) -> None:
        """Every contract problem of every external variant, one line each (UserError: exit 2,
        nothing written), before anything is trained."""
        external = [name for name, spec in self.variant_specs.items() if is_external(spec)]
        if not external:
            return
        child = self.for_child(self.dataset_names)
        jobs = [Job(name, _contract_job, (child, name)) for name in external]
        problems = []
        for job, outcome in self._execute(jobs):
            if outcome.error is not None:
                problems.append(f"{job.key}: the contract check did not finish: {outcome.error}")
            else:
                problems += outcome.value
        if problems:
            raise UserError("\n".join(problems))

    def contract_problems(self, name: str) -> list[str]:
        """Contract problems of variant `name` on a random batch shaped like each dataset of
        the run it can use (where its `requires` are not met, every task skips it anyway)."""
        cls = self.variant_class(name)
        found = {}
        for dataset_name in self.dataset_names:
            dataset = self.datasets[dataset_name]
            if set(cls.requires) - dataset.capabilities():
                continue
            try:
                spec = self.model_spec(Cell(name, dataset_name, self.seeds[0]))
            except Exception as err:
                found[dataset_name] = [f"resolving its hyperparameters raised {short_error(err)}"]
                continue
            found[dataset_name] = check_on_dataset(cls, dataset, spec.n_latents, spec.hparams, self.device)
        return merge_by_dataset(name, found)

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
        dataset = self.on_device(dataset.name)
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


# Module-level, so that 'spawn' can pickle them by name.
def _cell_job(runner: Runner, cell: Cell, task_names: list[str], hashes: dict[str, str], spec) -> list[dict]:
    return runner.train_and_evaluate(cell, [get_task(name) for name in task_names], hashes, spec)


def _contract_job(runner: Runner, name: str) -> list[str]:
    return runner.contract_problems(name)
