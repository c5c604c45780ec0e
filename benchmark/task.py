"""The task contract (SPEC section 5): datasets, metrics with directions, one headline metric."""
from pathlib import Path

import pandas as pd

from benchmark.data import Dataset
from benchmark.training.loop import TrainedModel


class NotScorable(Exception):
    """Raised by `evaluate` when a model has nothing the task can measure (e.g. a sweep setting
    whose penalty killed every latent): a `skipped` row with the reason, not an error."""


class Task:
    """Base class of every task. Subclasses set `metrics` and `headline` and implement `evaluate`.

    - `metrics`: metric name -> higher_is_better. `evaluate` must return exactly these keys
      (or a subset, when a metric does not apply, e.g. `psnr_db` on non-image data).
    - `epoch_callback(model, dataset, step) -> dict`: if defined, called at every convergence
      check of training (every `check_every` steps; once an epoch in older versions, hence the
      name); its outputs reach `evaluate` as `trained.history[self.name]`.
    - `reference_rows(dataset, config, seed) -> {row_name: metrics}`: rows of methods that are
      not SAEs (e.g. a pixel-space baseline), written with `row_name` in the variant column.
    - `plots(results, plot_dir) -> [(title, path)]`: figures embedded in the leaderboard.
    - `eval_seeded = True`: the evaluation draws randomness (probe subsamples, images to edit)
      from `config["eval_seed"]` (0: the task's canonical draw); the preset's
      `evaluation: {seeds: n}` scores the task's headline dataset under n of them
      (benchmark/report/eval_noise.py), through `evaluate_under`, which a task overrides to do its
      seed-free work (encoding a probe corpus) once for all of them.
    - `across_seeds = True`: the task compares the models of different seeds (and a same-data
      twin) instead of scoring one model; it implements `evaluate_seeds` and runs after the grid
      (benchmark/grid/seed_pass.py), never per cell.
    """

    name: str = ""
    description: str = ""
    metrics: dict[str, bool] = {}
    headline: str = ""
    epoch_callback = None
    across_seeds: bool = False
    eval_seeded: bool = False  # evaluate reads config["eval_seed"] for the randomness it draws

    def dataset_skip_reason(self, dataset: Dataset) -> str | None:
        """Why this task cannot use `dataset` at all (None: it can)."""
        return None

    def skip_reason(self, variant_cls, dataset: Dataset) -> str | None:
        """Why this task cannot score `variant_cls` on `dataset` (None: it can)."""
        missing = set(variant_cls.requires) - dataset.capabilities()
        if missing:
            shape = "x".join(map(str, dataset.input_shape))
            return (
                f"{variant_cls.name} requires {', '.join(sorted(missing))}; "
                f"{dataset.name} ({shape}) does not provide it"
            )
        return self.dataset_skip_reason(dataset)

    def evaluate(self, trained: TrainedModel, dataset: Dataset, config: dict) -> dict[str, float]:
        raise NotImplementedError

    def evaluate_under(self, trained: TrainedModel, dataset: Dataset, config: dict,
                       eval_seeds: list[int]) -> dict[int, dict[str, float]]:
        """{eval_seed: the metrics `evaluate` gives with that `config["eval_seed"]`}."""
        return {seed: self.evaluate(trained, dataset, dict(config, eval_seed=seed)) for seed in eval_seeds}

    def evaluate_seeds(self, models: dict[int, TrainedModel], twin: TrainedModel | None) -> dict[int, dict[str, float]]:
        """{seed: metrics} of one (variant, setting, dataset) from its models on every seed and,
        when given, the first seed's same-data twin (another initialisation, the same data)."""
        raise NotImplementedError

    def reference_rows(self, dataset: Dataset, config: dict, seed: int) -> dict[str, dict[str, float]]:
        return {}

    def headline_dataset(self, dataset_names: list[str]) -> str:
        """The dataset whose headline value goes in the leaderboard's summary table."""
        return dataset_names[0]

    def plots(self, results: pd.DataFrame, plot_dir: Path) -> list[tuple[str, Path]]:
        return []


_instances: dict[str, Task] = {}


def get_task(name: str) -> Task:
    """The (stateless) instance of a registered task class."""
    from benchmark.registry import TASKS

    if name not in _instances:
        _instances[name] = TASKS.get(name)()
    return _instances[name]
