"""The pass after the grid for tasks that compare seeds (`Task.across_seeds`, e.g. `stability`).

Such a task scores a (variant, setting, dataset) from its models on every seed at once, so it
cannot run inside one cell: after the grid, every seed's model is loaded from the model cache
(the grid trained it; a model the grid did not need is trained here), and on the task's headline
dataset the first seed's *same-data twin* is trained too (the same variant, setting and data
stream, initialised from seed + the task's INIT_OFFSET; a stackable sweep's twins train as one
stack), except in the budget check's 2x run, which needs the headline only. Rows stay per
(variant, setting, dataset, seed), each at its own model's L0, with a config hash that also
covers the run's seed set. With fewer than two seeds the rows are `skipped` with the reason.
"""
import math
from dataclasses import dataclass

from benchmark.errors import short_error
from benchmark.grid.plan import Cell
from benchmark.task import NotScorable, get_task


@dataclass
class SameDataTwin:
    """A same-data twin to train (not an untrained twin): what `Runner.stacks` groups by."""

    cell: Cell
    spec: object


def seed_task_rows(runner, finished: set[str]):
    """Rows of every selected across-seeds task, one (variant, dataset) at a time."""
    for task in (get_task(t) for t in runner.tasks):
        if not task.across_seeds:
            continue
        headline = task.headline_dataset(runner.preset.task_datasets(task.name))
        for dataset in runner.preset.task_datasets(task.name):
            if dataset not in runner.dataset_names:
                continue
            for variant in runner.variants:
                yield from _variant_rows(runner, task, variant, dataset,
                                         dataset == headline and runner.options.same_data_twins, finished)


def _variant_rows(runner, task, variant: str, dataset: str, with_twin: bool, finished: set[str]):
    seeds = runner.seeds_for(dataset)
    settings = runner.planner.settings(variant, runner.datasets[dataset, seeds[0]])
    todo = {}
    for setting in settings:
        cells = [Cell(variant, setting, dataset, seed) for seed in seeds]
        specs, hashes = {}, {}
        for cell in cells:
            spec, _ = runner.resolve(cell, [])
            specs[cell.seed] = spec
            identity = {"unresolved": short_error(spec)} if isinstance(spec, Exception) else spec.identity()
            hashes[cell.seed] = {task.name: runner.config_hash(task.name, cell, dict(
                model=identity, seeds=list(seeds), twin=with_twin))}
        if all(h[task.name] in finished for h in hashes.values()):
            continue
        skipped = [r for cell in cells for r in runner.split_skipped(cell, [task], hashes[cell.seed])[0]]
        if skipped:
            yield skipped
            continue
        if len(seeds) < 2:
            yield [r for cell in cells for r in runner.row_maker(cell, hashes[cell.seed])(
                task, status="skipped", message=f"{task.name} compares seeds: this run has one ({seeds[0]}); "
                                                "give two or more")]
            continue
        unresolved = next((spec for spec in specs.values() if isinstance(spec, Exception)), None)
        if unresolved is not None:
            yield [r for cell in cells for r in runner.error_rows(cell, [task], hashes[cell.seed],
                                                                  f"training: {short_error(unresolved)}")]
            continue
        todo[setting] = (cells, specs, hashes)
    twins = _train_twins(runner, task, [c[0] for c, _, _ in todo.values()],
                         [s[seeds[0]] for _, s, _ in todo.values()]) if with_twin and todo else {}
    for setting, (cells, specs, hashes) in todo.items():
        yield _setting_rows(runner, task, cells, specs, hashes, twins.get(setting))


def _train_twins(runner, task, cells: list[Cell], specs: list) -> dict:
    """{setting: the first seed's same-data twin}; cells that share a stack train as one stack.
    A twin that fails to train is left out (its rows then lack the same-data metrics)."""
    from tasks.stability import INIT_OFFSET

    init = cells[0].seed + INIT_OFFSET
    twins = {}
    for group in runner.stacks([SameDataTwin(cell, spec) for cell, spec in zip(cells, specs)]):
        try:
            if len(group) > 1:  # a stack
                models = runner.train_group([w.cell for w in group], [w.spec for w in group], init_seed=init)
            else:
                models = [runner.train(group[0].cell, group[0].spec, init_seed=init)]
        except Exception:  # one at a time, so that one failure costs one twin
            models = [_train_or_none(runner, w.cell, w.spec, init) for w in group]
        twins.update({w.cell.setting: model for w, model in zip(group, models) if model is not None})
    return twins


def _train_or_none(runner, cell: Cell, spec, init_seed: int):
    try:
        return runner.train(cell, spec, init_seed=init_seed)
    except Exception:
        return None


def _setting_rows(runner, task, cells: list[Cell], specs: dict, hashes: dict, twin) -> list[dict]:
    """Rows of one (variant, setting, dataset) on every seed; a failure is every seed's error row."""
    try:
        models = {cell.seed: runner.train(cell, specs[cell.seed]) for cell in cells}
        l0s = {cell.seed: runner.cell_l0(models[cell.seed], cell) for cell in cells}
        metrics = task.evaluate_seeds(models, twin)
    except NotScorable as why:
        return [r for cell in cells
                for r in runner.row_maker(cell, hashes[cell.seed])(task, status="skipped", message=str(why))]
    except Exception as err:
        return [r for cell in cells for r in runner.error_rows(cell, [task], hashes[cell.seed],
                                                               f"evaluation: {short_error(err)}")]
    rows = []
    for cell in cells:
        row = runner.row_maker(cell, hashes[cell.seed], models[cell.seed], l0s.get(cell.seed, math.nan))
        rows += row(task, metrics=metrics[cell.seed], directions=task.metrics)
    return rows
