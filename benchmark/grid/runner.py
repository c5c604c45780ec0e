"""Executing the grid and recording its rows. Every (variant, setting, dataset, seed) cell is
trained once (a control is fitted in closed form) and scored by every task that lists its
dataset; results are written cell by cell, so an interrupted run resumes. What a run needs and
what identifies it is planned in benchmark/grid/plan.py.

Each cell is trained and scored in a child process with a time limit (benchmark/grid/isolation.py):
an exception, a crash, a NaN or a timeout becomes an `error` row and the grid runs on. Only this
(parent) process writes results.csv. External variants (FILE.py:Class) are checked against the
contract before anything is trained (benchmark/contract.py). Every row carries the model's
achieved test L0, its sparsity setting, whether its training converged and its steps.
"""
import copy
import dataclasses
import inspect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmark.config import Preset
from benchmark.contract import check_on_dataset, merge_by_dataset
from benchmark.control import is_trainable
from benchmark.data import Dataset
from benchmark.datasets import build_dataset
from benchmark.errors import UserError, short_error
from benchmark.grid.isolation import Job, run_in_process, run_jobs, start_method
from benchmark.grid.plan import Cell, ModelSpec, Planner, model_class  # noqa: F401 (ModelSpec re-exported)
from benchmark.registry import CONTROLS, DATASETS, TASKS, VARIANTS
from benchmark.results import ResultsFile, RunInfo, make_rows
from benchmark.grid.seed_pass import seed_task_rows
from benchmark.submission import (canonical_spec, is_external, load_variant_config, resolve_variant,
                                  source_hash, variant_name, with_variant_config)
from benchmark.task import NotScorable, get_task
from benchmark.training.stacking import group_key, is_stackable
from benchmark.training.loop import Fork, ModelCache, TrainedModel, train_model, train_models, untrained
from benchmark.grid.twins import KEEP_TOP, is_twin, k_sparse_variants, twin_name


@dataclass
class RunOptions:
    preset: Preset
    variants: list[str] | None = None  # None: every registered variant
    tasks: list[str] | None = None  # None: every task of the preset
    seeds: list[int] | None = None  # None: the preset's seeds
    datasets: list[str] | None = None  # None: every dataset of the selected tasks
    controls: bool = True  # the preset's controls run beside the variants
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
    executor: str = "local"  # "local" (child processes) or "ray"
    ray_address: str | None = None  # None: start a local Ray instance
    length: float = 1.0  # training-length multiplier (2: the budget check's re-training)
    results_name: str = "results.csv"  # the file under out_dir (the budget check writes results-2x.csv)
    stack: bool = True  # train each sweep of a stackable variant as one stacked model
    twins: bool = True  # every trainable variant's untrained twin runs beside it (benchmark/grid/twins.py)
    same_data_twins: bool = True  # stability's same-data twin on its headline dataset (grid/seed_pass.py)


DEFAULT_CELL_TIMEOUT = 600.0


@dataclass
class RunSummary:
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "skipped": 0, "error": 0, "resumed": 0})
    errors: list[str] = field(default_factory=list)

    def add(self, rows: list[dict]) -> None:
        for row in rows:
            if row["metric"] or row["status"] != "ok":
                self.counts[row["status"]] += 1
            if row["status"] == "error":
                self.errors.append(f"{row['task']} / {row['dataset']} / {row['variant']} [{row['setting']}] / "
                                   f"seed {row['seed']}: {row['message']}")


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


@torch.no_grad()
def achieved_l0(model, dataset: Dataset) -> float:
    """The model's test L0: distinct active latents per test sample, averaged."""
    from tasks._common import active_per_sample, encode_all

    return float(active_per_sample(encode_all(model, dataset.test, dataset.test_concepts)).mean())


class Runner:
    def __init__(self, options: RunOptions):
        self.options = options
        self.preset = options.preset
        self.device = resolve_device(options.device)
        self.out_dir = Path(options.out_dir)
        self.tasks = self._select_tasks()
        self.variant_specs = self._resolve_variants(options.variants or VARIANTS.names())
        self.sources = {name: source_hash(spec) for name, spec in self.variant_specs.items() if is_external(spec)}
        if options.variant_config is not None:
            self._apply_variant_config(options.variant_config)
        self.controls = [c for c in self.preset.controls if c in CONTROLS] if options.controls else []
        self.twins = [twin_name(v) for v, spec in self.variant_specs.items()
                      if options.twins and is_trainable(model_class(spec))]
        self.variants = list(self.variant_specs) + self.twins + self.controls
        self.dataset_names = self._select_datasets()
        for name in self.dataset_names:
            DATASETS.get(self.preset.datasets[name].get("kind", name))
        self.planner = Planner(self.preset, self.variant_specs, self.sources, options.length)
        self.results = ResultsFile(self.out_dir / options.results_name)
        self.cache = ModelCache(self.out_dir / "cache")
        self.artifact_dir = self.out_dir / "plots" / "artifacts"
        self.info = RunInfo.new(self.preset.name, self.device)
        self.datasets: dict[tuple[str, int], Dataset] = {}  # (name, seed), on the CPU
        self._on_device: dict[tuple[str, int], Dataset] = {}
        self.cell_timeout = float(options.cell_timeout or getattr(self.preset, "cell_timeout", None)
                                  or DEFAULT_CELL_TIMEOUT)
        self.jobs = default_jobs(self.device) if options.jobs is None else options.jobs
        self.budget_runner: Runner | None = None  # the budget check to come: its longer models fork off this grid's
        if self.cell_timeout <= 0 or self.jobs < 1:
            raise UserError("--cell-timeout must be positive and --jobs at least 1")

    def _resolve_variants(self, specs: list[str]) -> dict[str, str]:
        """{results name: spec}; every unknown name or unloadable submission is one line of
        the UserError, before anything is built or written."""
        found, problems = {}, []
        for spec in specs:
            if is_twin(spec):
                problems.append(f"{spec} is an untrained twin: twins run beside every trainable variant "
                                "(ask for its variant; --no-twins leaves them out)")
                continue
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
        return self.planner.model_class(name)

    def _select_tasks(self) -> list[str]:
        wanted = self.options.tasks or list(self.preset.tasks)
        for name in wanted:
            TASKS.get(name)
            if name not in self.preset.tasks:
                raise UserError(f"task {name!r} has no datasets in preset {self.preset.name!r}; "
                                f"its tasks are: {', '.join(self.preset.tasks)}")
        return wanted

    def seeds_for(self, dataset: str) -> list[int]:
        return list(self.options.seeds) if self.options.seeds else self.preset.seeds_for(dataset)

    def _select_datasets(self) -> list[str]:
        listed = sorted({d for t in self.tasks for d in self.preset.task_datasets(t)})
        if self.options.datasets is None:
            return listed
        unknown = [d for d in self.options.datasets if d not in listed]
        if unknown:
            raise UserError(f"dataset(s) {', '.join(unknown)} are not used by the selected tasks of preset "
                            f"{self.preset.name!r}; known: {', '.join(listed)}")
        return [d for d in listed if d in self.options.datasets]

    # ----- set-up -----
    def load_datasets(self) -> None:
        """Build every (dataset, seed) up front: each seed draws its own data (crops, splits,
        dictionaries), and a missing dataset stops the run before anything is written."""
        keys = [(name, seed) for name in self.dataset_names for seed in self.seeds_for(name)]
        for name, seed in tqdm(keys, desc="datasets", leave=False, disable=not self.options.progress):
            if (name, seed) not in self.datasets:  # (eval builds its dataset first, to check the checkpoints)
                self.datasets[name, seed] = self.build_dataset(name, seed)
            self.check_stream(name, self.datasets[name, seed])

    def check_stream(self, name: str, dataset: Dataset) -> None:
        """A preset that asks for a stream (`train: {stream: true}`) on a finite dataset is an
        error, not a silent fall-back to epochs."""
        asked = any(self.preset.train_settings(v, name).get("stream") is True for v in self.variant_specs)
        if asked and dataset.stream is None:
            raise UserError(f"dataset {name!r} is finite (it cannot make more samples): remove 'stream: true' "
                            "from its training settings; it trains in epochs over its pool")

    def build_dataset(self, name: str, seed: int) -> Dataset:
        """One (dataset, seed); builders that cache derived data (a model's activations) keep it
        under the run's own cache folder."""
        config = self.preset.dataset_build_config(name)
        builder = DATASETS.get(config.get("kind", name))
        if "cache_dir" in inspect.signature(builder).parameters:
            config.setdefault("cache_dir", str(self.out_dir / "cache" / "activations"))
        return build_dataset(name, config, self.options.data_root, self.options.download, seed=seed)

    def on_device(self, name: str, seed: int) -> Dataset:
        """The dataset on the run's device (the same tensors on the CPU), moved once per process."""
        if (name, seed) not in self._on_device:
            self._on_device[name, seed] = self.datasets[name, seed].to(self.device)
        return self._on_device[name, seed]

    def for_child(self, keys: list[tuple[str, int]]) -> "Runner":
        """A shallow copy holding only the datasets a child needs (what 'spawn' must pickle)."""
        child = copy.copy(self)
        child.datasets = {key: self.datasets[key] for key in keys}
        child._on_device = {}
        return child

    def tasks_for(self, dataset: str, selected_only: bool = True) -> list:
        """The tasks that score each cell of `dataset` (across-seeds tasks run after the grid)."""
        names = self.tasks if selected_only else [t for t in TASKS.names() if t in self.preset.tasks]
        tasks = [get_task(t) for t in names if dataset in self.preset.task_datasets(t)]
        return [t for t in tasks if not t.across_seeds]

    def model_spec(self, cell: Cell) -> ModelSpec:
        return self.planner.model_spec(cell, self.datasets[cell.dataset, cell.seed])

    def config_hash(self, task: str, cell: Cell, model_identity: dict) -> str:
        evaluations = len(self.eval_seeds_for(get_task(task), cell.dataset))
        if evaluations > 1:  # (the identity of a one-evaluation cell is what it was before eval seeds)
            model_identity = dict(model_identity, eval_seeds=evaluations)
        return self.planner.config_hash(task, cell, model_identity)

    def eval_seeds_for(self, task, dataset: str) -> list[int]:
        """`task`'s evaluation seeds on `dataset`: the preset's `evaluation: {seeds: n}` on the
        headline dataset of a task whose evaluation draws randomness (`eval_seeded`), else [0]."""
        if task.eval_seeded and dataset == task.headline_dataset(self.preset.task_datasets(task.name)):
            return list(range(self.preset.eval_seeds))
        return [0]

    # ----- one cell -----
    def train(self, cell: Cell, spec: ModelSpec, init_seed: int | None = None) -> TrainedModel:
        """The cell's model from the cache, or trained (a control fitted) now. `init_seed`: a
        same-data twin initialised from another seed (the data stream stays the cell's)."""
        dataset = self.on_device(cell.dataset, cell.seed)
        torch.manual_seed(cell.seed if init_seed is None else init_seed)
        cls = self.variant_class(cell.variant)
        hparams = dict(spec.hparams)
        keep_top = hparams.pop(KEEP_TOP, None)  # a penalty-based twin's sparsity, not the constructor's
        model = cls(dataset.input_shape, spec.n_latents, **hparams).to(self.device)
        if is_twin(cell.variant):  # initialised from the data, never stepped, never cached
            return untrained(model, dataset, keep_top)
        if not is_trainable(cls):  # a control (or a loaded checkpoint): fitted, never trained
            with torch.no_grad():
                model.fit(dataset.train)
            model.eval()
            return TrainedModel(model=model, trained=False)
        callbacks = self.callbacks_for(cell.dataset)
        key = spec.key(sorted(callbacks), init_seed)
        trained = self.cache.load(key, model)
        if trained is None:
            progress = self.options.progress and self.jobs == 1  # parallel bars would garble
            trained = train_model(model, dataset, spec.train, cell.seed, callbacks, progress)
            self.cache.save(key, trained)
        return trained

    def train_group(self, cells: list[Cell], specs: list[ModelSpec], init_seed: int | None = None) -> list[TrainedModel]:
        """The models of one stackable sweep: those in the cache are loaded, the others trained
        together as one stack (benchmark/training/stacking.py) and cached one by one (`init_seed`: as
        in `train`). Those the budget check will train longer get their longer model too, as a
        fork (benchmark/training/loop.py), cached for the check to load."""
        cls = self.variant_class(cells[0].variant)
        callbacks = self.callbacks_for(cells[0].dataset)
        trained, todo = [], []
        for i, (cell, spec) in enumerate(zip(cells, specs)):
            dataset = self.on_device(cell.dataset, cell.seed)
            torch.manual_seed(cell.seed if init_seed is None else init_seed)  # as if trained alone
            model = cls(dataset.input_shape, spec.n_latents, **spec.hparams).to(self.device)
            trained.append(self.cache.load(spec.key(sorted(callbacks), init_seed), model))
            if trained[-1] is None:
                todo.append((i, model, dataset))
        if not todo:
            return trained
        forks, fork_keys = [], []
        for position, (i, model, _) in enumerate(todo):
            longer = self.longer_spec(cells[i], specs[i]) if init_seed is None else None
            if longer is not None:
                # A copy receives its weights (a new instance would draw from the seeded generator).
                forks.append(Fork(position, copy.deepcopy(model), longer[0].train))
                fork_keys.append(longer[1])
        fresh = train_models([m for _, m, _ in todo], [d for _, _, d in todo], specs[0].train,
                             [cells[i].seed for i, _, _ in todo], callbacks, self.options.progress and self.jobs == 1,
                             hparams=[specs[i].hparams for i, _, _ in todo], forks=forks)
        for (i, _, _), result in zip(todo, fresh):
            self.cache.save(specs[i].key(sorted(callbacks), init_seed), result)
            trained[i] = result
        for key, result in zip(fork_keys, fresh[len(todo):]):
            self.cache.save(key, result)
        return trained

    def callbacks_for(self, dataset: str) -> dict:
        return {t.name: t.epoch_callback for t in self.tasks_for(dataset, selected_only=False)
                if t.epoch_callback is not None}

    def longer_spec(self, cell: Cell, spec: ModelSpec) -> tuple[ModelSpec, str] | None:
        """(the budget check's spec of `cell`, its cache key) when the check (`budget_runner`)
        will train this cell at its longer length, the two differ in length only, and that model
        is not cached yet; else None."""
        budget = self.budget_runner
        if (budget is None or cell.dataset not in budget.dataset_names or cell.variant not in budget.variant_specs
                or cell.seed not in budget.seeds_for(cell.dataset)):
            return None
        dataset = self.datasets[cell.dataset, cell.seed]
        if cell.setting not in budget.planner.settings(cell.variant, dataset):  # a k it skips: bracketing_sweep
            return None
        longer = budget.planner.model_spec(cell, dataset)
        if ((longer.variant, longer.n_latents, longer.hparams, longer.seed) != (spec.variant, spec.n_latents, spec.hparams, spec.seed)
                or dataclasses.replace(longer.train, length=spec.train.length) != spec.train):
            return None
        key = longer.key(sorted(budget.callbacks_for(cell.dataset)))
        return None if self.cache.holds(key) else (longer, key)

    def trained_model(self, variant: str, dataset: str, seed: int, setting: str) -> TrainedModel:
        """One model of the grid, from the cache or trained now (e.g. for `export`)."""
        if (dataset, seed) not in self.datasets:
            self.datasets[dataset, seed] = self.build_dataset(dataset, seed)
        settings = self.planner.settings(variant, self.datasets[dataset, seed])
        if setting not in settings:
            raise UserError(f"{variant} has no setting {setting!r} on {dataset}; its settings: {', '.join(settings)}")
        cell = Cell(variant, setting, dataset, seed)
        return self.train(cell, self.model_spec(cell))

    def evaluate(self, task, trained: TrainedModel, cell: Cell) -> dict[int, dict[str, float]]:
        """{eval_seed: metrics} under each of the cell's evaluation seeds (eval_seeds_for)."""
        config = dict(self.preset.task_config(task.name), artifact_dir=self.artifact_dir,
                      model_name=cell.variant, seed=cell.seed, setting=cell.setting)
        by_seed = task.evaluate_under(trained, self.on_device(cell.dataset, cell.seed), config,
                                      self.eval_seeds_for(task, cell.dataset))
        for metrics in by_seed.values():
            check_metrics(task, metrics)
        return by_seed

    def row_maker(self, cell: Cell, hashes: dict[str, str], trained: TrainedModel | None = None,
                  l0: float = math.nan):
        model_fields = {} if trained is None else dict(converged=trained.converged, steps=trained.steps,
                                                       step_cap=trained.cap)
        return lambda task, **kw: make_rows(self.info, task=task.name, dataset=cell.dataset,  # noqa: E731
                                            variant=cell.variant, setting=cell.setting, seed=cell.seed, l0=l0,
                                            config_hash=hashes[task.name], **model_fields, **kw)

    def split_skipped(self, cell: Cell, tasks: list, hashes: dict[str, str]) -> tuple[list[dict], list]:
        """(`skipped` rows of the tasks that cannot score this cell, the tasks that can)."""
        row, rows, runnable = self.row_maker(cell, hashes), [], []
        cls = self.variant_class(cell.variant)
        for task in tasks:
            reason = task.skip_reason(cls, self.datasets[cell.dataset, cell.seed])
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
        return self.evaluate_cell(cell, tasks, hashes, trained)

    def train_and_evaluate_group(self, items: list["CellWork"]) -> list[dict]:
        """Rows of a stacked sweep's cells (or a group of twins). A training failure raises: the
        parent then runs the cells one at a time, so that it lands on the cell that caused it."""
        if len(items) == 1 or is_twin(items[0].cell.variant):  # twins: one after another
            return [row for item in items
                    for row in self.train_and_evaluate(item.cell, item.tasks, item.hashes, item.spec)]
        trained = self.train_group([i.cell for i in items], [i.spec for i in items])
        return [row for item, model in zip(items, trained)
                for row in self.evaluate_cell(item.cell, item.tasks, item.hashes, model)]

    def cell_l0(self, trained: TrainedModel, cell: Cell) -> float:
        return achieved_l0(trained.model, self.on_device(cell.dataset, cell.seed))

    def evaluate_cell(self, cell: Cell, tasks: list, hashes: dict[str, str], trained: TrainedModel) -> list[dict]:
        try:
            l0 = self.cell_l0(trained, cell)
        except Exception as err:
            return self.error_rows(cell, tasks, hashes, f"evaluation: {short_error(err)}")
        rows, row = [], self.row_maker(cell, hashes, trained, l0)
        for task in tasks:
            try:  # every evaluation seed's rows, or the task's one skipped or error row
                rows += [r for eval_seed, metrics in self.evaluate(task, trained, cell).items()
                         for r in row(task, metrics=metrics, directions=task.metrics, eval_seed=eval_seed)]
            except NotScorable as why:
                rows += row(task, status="skipped", message=str(why))
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
        return [Cell(v, setting, d, s) for d in self.dataset_names for s in self.seeds_for(d) for v in self.variants
                for setting in self.planner.settings(v, self.datasets[d, s])]

    def run(self) -> RunSummary:
        self.load_datasets()
        self.check_submissions()
        summary = RunSummary()
        finished = set() if self.options.force else self.results.finished_hashes()
        cells = self.cells()
        alone: list[CellWork] = []  # cells of a stack that failed, re-run one by one
        with tqdm(total=len(cells), desc="grid", disable=not self.options.progress) as bar:
            for job, outcome in self._execute(self._cell_jobs(cells, finished, summary, bar)):
                if outcome.error is not None and len(job.key) > 1:
                    alone += job.key
                    continue
                self._write_outcome(job.key, outcome, summary)
                bar.update(len(job.key))
            for job, outcome in self._execute(self._jobs([[item] for item in alone])):
                self._write_outcome(job.key, outcome, summary)
                bar.update()
        for rows in self.reference_rows(finished):
            self._write(rows, summary)
        for rows in seed_task_rows(self, finished):
            self._write(rows, summary)
        return summary

    def _write_outcome(self, items: list["CellWork"], outcome, summary: RunSummary) -> None:
        if outcome.error is None:
            self._write([r for item in items for r in item.skipped] + outcome.value, summary)
            return
        hint = "; raise --cell-timeout" if outcome.error.startswith("timed out") else ""
        item = items[0]
        self._write(item.skipped + self.error_rows(item.cell, item.tasks, item.hashes, outcome.error + hint), summary)

    def _write(self, rows: list[dict], summary: RunSummary) -> None:
        self.results.write(rows)
        summary.add(rows)

    def _execute(self, jobs):
        if not self.options.isolate:
            return run_in_process(jobs)
        if self.options.executor == "ray":
            from benchmark.grid.ray_executor import run_jobs_ray

            return run_jobs_ray(jobs, timeout=self.cell_timeout, address=self.options.ray_address,
                                num_gpus_per_job=1 if self.device == "cuda" else 0,
                                parallel=self.options.jobs, progress=self.options.progress)
        method = self.options.start_method or start_method(self.device)
        return run_jobs(jobs, timeout=self.cell_timeout, method=method, parallel=self.jobs)

    def _cell_jobs(self, cells: list[Cell], finished: set[str], summary: RunSummary, bar):
        """Child-process jobs for the cells that have something to train, a stackable sweep
        (its settings and seeds) as one job; the rows of the others (finished, skipped, or
        unresolvable) are written here directly."""
        work = []
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
                work.append(CellWork(cell, skipped, runnable, hashes, spec))
            else:
                if skipped:
                    self._write(skipped, summary)
                bar.update()
        return self._jobs(self.stacks(work))

    def stacks(self, work: list["CellWork"]) -> list[list["CellWork"]]:
        """Cells grouped into jobs: a built-in stackable variant's cells on one dataset that
        share width, fixed hyperparameters, training settings and batch size (every seed and
        sweep setting) as one stack; the untrained twins of one (dataset, seed) as one job (they
        train nothing: a child process each would cost more than their evaluation); every other
        cell alone."""
        groups: dict = {}
        for item in work:
            groups.setdefault(self.stack_key(item) or ("alone", len(groups)), []).append(item)
        return list(groups.values())

    def stack_key(self, item: "CellWork"):
        cls = self.variant_class(item.cell.variant)
        if is_twin(item.cell.variant):
            return ("twins", item.cell.dataset, item.cell.seed)
        if not (self.options.stack and is_stackable(cls) and is_trainable(cls)) or is_external(
                self.variant_specs.get(item.cell.variant, "")):
            return None
        dataset = self.datasets[item.cell.dataset, item.cell.seed]
        batch = item.spec.train.batch_for(dataset.train.shape[0])
        return (item.cell.variant, item.cell.dataset, group_key(cls, item.spec.n_latents, item.spec.hparams),
                item.spec.train, batch)

    def _jobs(self, groups: list[list["CellWork"]]):
        for items in groups:
            keys = sorted({(i.cell.dataset, i.cell.seed) for i in items})
            child = self if not self.options.isolate else self.for_child(keys)
            yield Job(items, _group_job, (child, items), cells=len(items))

    # ----- the contract check of external variants -----
    def check_submissions(self) -> None:
        """Every contract problem of every external variant, one line each (UserError: exit 2,
        nothing written), before anything is trained."""
        external = [name for name, spec in self.variant_specs.items() if is_external(spec)]
        if not external:
            return
        child = self.for_child([(name, self.seeds_for(name)[0]) for name in self.dataset_names])
        jobs = [Job(name, _contract_job, (child, name)) for name in external]
        found = {}
        for job, outcome in self._execute(jobs):  # in the order they finish
            found[job.key] = ([f"{job.key}: the contract check did not finish: {outcome.error}"]
                              if outcome.error is not None else outcome.value)
        problems = [line for name in external for line in found[name]]  # in the order given
        if problems:
            raise UserError("\n".join(problems))

    def contract_problems(self, name: str) -> list[str]:
        """Contract problems of variant `name` on a random batch shaped like each dataset of
        the run it can use (where its `requires` are not met, every task skips it anyway)."""
        cls = self.variant_class(name)
        found = {}
        for dataset_name in self.dataset_names:
            seed = self.seeds_for(dataset_name)[0]
            dataset = self.datasets[dataset_name, seed]
            if set(cls.requires) - dataset.capabilities():
                continue
            try:
                settings = self.planner.settings(name, dataset)
                spec = self.model_spec(Cell(name, next(iter(settings)), dataset_name, seed))
            except Exception as err:
                found[dataset_name] = [f"resolving its hyperparameters raised {short_error(err)}"]
                continue
            found[dataset_name] = check_on_dataset(cls, dataset, spec.n_latents, spec.hparams, self.device)
        return merge_by_dataset(name, found)

    def reference_rows(self, finished: set[str]):
        """Rows of the non-SAE references that some tasks define (e.g. pixel-space arithmetic).
        They have no L0 and no sparsity setting: the leaderboard shows them at every target."""
        for task in (get_task(t) for t in self.tasks):
            for dataset_name in self.preset.task_datasets(task.name):
                if dataset_name not in self.dataset_names:
                    continue
                for seed in self.seeds_for(dataset_name):
                    if task.dataset_skip_reason(self.datasets[dataset_name, seed]):
                        continue
                    yield from self._reference_rows_for(task, dataset_name, seed, finished)

    def _reference_rows_for(self, task, dataset_name: str, seed: int, finished: set[str]):
        dataset = self.on_device(dataset_name, seed)
        reference_cell = lambda name: Cell(name, "reference", dataset_name, seed)  # noqa: E731
        found = {}  # eval seed -> {reference name: metrics}
        try:
            for eval_seed in self.eval_seeds_for(task, dataset_name):
                config = dict(self.preset.task_config(task.name), artifact_dir=self.artifact_dir, seed=seed,
                              eval_seed=eval_seed)
                found[eval_seed] = task.reference_rows(dataset, config, seed)
        except Exception as err:
            cell = reference_cell("references")
            yield make_rows(self.info, task=task.name, dataset=dataset_name, variant="references",
                            setting=cell.setting, seed=seed, l0=math.nan,
                            config_hash=self.config_hash(task.name, cell, {}), status="error",
                            message=short_error(err))
            return
        for name in found[0]:
            cell = reference_cell(name)
            config_hash = self.config_hash(task.name, cell, {"reference": name, "data": dataset.config})
            if config_hash in finished:
                continue
            rows = []
            for eval_seed, references in found.items():
                check_metrics(task, references[name])
                rows += make_rows(self.info, task=task.name, dataset=dataset_name, variant=name, setting=cell.setting,
                                  seed=seed, l0=math.nan, config_hash=config_hash, metrics=references[name],
                                  directions=task.metrics, eval_seed=eval_seed)
            yield rows


def check_metrics(task, metrics: dict[str, float]) -> None:
    """Every metric must be declared by the task (a typo would otherwise publish a new column)
    and finite (a NaN in a leaderboard is a bug, not a score)."""
    unknown = set(metrics) - set(task.metrics)
    if unknown:
        raise ValueError(f"task {task.name} returned undeclared metric(s) {sorted(unknown)}")
    bad = [name for name, value in metrics.items() if not math.isfinite(float(value))]
    if bad:
        raise ValueError(f"non-finite metric(s) {', '.join(bad)}")


BUDGET_RESULTS = "results-2x.csv"  # beside results.csv: the budget check's re-trained headlines


def budget_check_options(options: RunOptions) -> RunOptions | None:
    """The re-run that checks a run's headline verdicts against longer training (the preset's
    `budget_check`: `length` x the training, on its first `seeds` seeds, and at least two where a
    task that compares seeds has its headline): each selected task on its headline dataset only,
    written to results-2x.csv beside results.csv. A run narrowed
    with --dataset checks only the headlines among its datasets (it did not train the others).
    None when the preset asks for none, or no headline is in the run."""
    preset = options.preset
    if preset.budget_check is None:
        return None
    headline = {t: get_task(t).headline_dataset(preset.task_datasets(t)) for t in options.tasks or list(preset.tasks)}
    tasks = [t for t, name in headline.items() if not options.datasets or name in options.datasets]
    if not tasks:
        return None
    # A task that compares seeds (stability) needs two of them at 2x: their one pair.
    compared = {headline[t] for t in tasks if get_task(t).across_seeds}
    count = {name: max(preset.budget_check_seeds(name), 2 if name in compared else 1) for name in preset.datasets}
    narrowed = dataclasses.replace(preset, tasks={t: dict(preset.tasks[t], datasets=[headline[t]]) for t in tasks},
                                   datasets={name: dict(entry, seeds=(options.seeds or preset.seeds_for(name))
                                                        [: count[name]],
                                                        variants=headline_sweeps(preset, name))
                                             for name, entry in preset.datasets.items()})
    # Twins do not train: their 2x reading is their 1x one (the budget check takes it from there).
    # Nor does stability's same-data twin: it gives same_data_mcc, not the headline pairwise_mcc.
    return dataclasses.replace(options, preset=narrowed, tasks=tasks, seeds=None, datasets=None, twins=False,
                               same_data_twins=False, length=preset.budget_check["length"],
                               results_name=BUDGET_RESULTS)


def headline_sweeps(preset: Preset, dataset: str) -> dict[str, dict]:
    """`dataset`'s variant entries for the budget check: each k-sparse variant's sweep cut to the
    settings its headline L0 is read from (`bracketing_sweep`); the other variants' as they are."""
    entries = {name: dict(entry or {}) for name, entry in (preset.datasets[dataset].get("variants") or {}).items()}
    k_sparse = set(k_sparse_variants())
    for name in sorted(set(preset.variants) | set(entries)):
        sweep = preset.sweep(name, dataset)
        if name in k_sparse and all("k" in s for s in sweep):
            entries[name] = dict(entries.get(name, {}), sweep=bracketing_sweep(sweep, preset.headline_l0(dataset)))
    return entries


def bracketing_sweep(sweep: list[dict], target: float) -> list[dict]:
    """The settings of a k-sparse sweep that a reading at L0 `target` comes from: the largest k
    below it, a k equal to it, and the smallest k above it. Such a model's L0 stays near its k
    (topk and mp at most k; batchtopk's threshold drifts up to ~35% above it), and a sweep's ks
    are about twice apart, so the two neighbours bracket the target at either budget. The other
    settings would train at 2x for readings the check never makes (mp's cost grows with k). A
    bracket that still fails shows as "not reached at 2x" in the check, never as a silent gap."""
    ks = sorted({s["k"] for s in sweep})
    keep = set([k for k in ks if k < target][-1:] + [k for k in ks if k == target] + [k for k in ks if k > target][:1])
    return [s for s in sweep if s["k"] in keep]


@dataclass
class CellWork:
    """One cell to train and score: its `skipped` rows, the tasks that will score it, their
    config hashes and its model spec."""

    cell: Cell
    skipped: list[dict]
    tasks: list
    hashes: dict[str, str]
    spec: ModelSpec

    def __getstate__(self):  # tasks travel by name ('spawn' and Ray pickle the job)
        return dict(self.__dict__, tasks=[t.name for t in self.tasks])

    def __setstate__(self, state):
        self.__dict__.update(state, tasks=[get_task(name) for name in state["tasks"]])


# Module-level, so that 'spawn' can pickle them by name.
def _group_job(runner: Runner, items: list[CellWork]) -> list[dict]:
    return runner.train_and_evaluate_group(items)


def _contract_job(runner: Runner, name: str) -> list[str]:
    return runner.contract_problems(name)
