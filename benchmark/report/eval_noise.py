"""Training seeds against evaluation seeds: where a headline's spread comes from.

Tasks whose evaluation draws randomness (`Task.eval_seeded`: the balanced probe subsamples of
`sparse_probing`, the images `intervention` edits) take an evaluation seed, and a run whose preset
sets `evaluation: {seeds: n}` scores each model of those tasks' headline datasets under n
evaluation seeds (rows keep their `eval_seed`; every other reading averages them per model).
Here a headline's values at its target L0 are read per (training seed, evaluation seed), each
evaluation seed's sweep interpolated on its own, and split, per variant or control, as a one-way
random-effects ANOVA: the evaluation variance is the mean within-model variance over evaluation
seeds; the training variance is the variance of the models' means over training seeds less the
part the evaluation noise explains (within / n, floored at 0). Both are averaged over the entries
that have two or more training seeds, each with the same two or more evaluation seeds.
"""
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.report.matched import interpolate, model_rows


@dataclass(frozen=True)
class Split:
    training: float  # variance from training seeds (their data draw and initialisation)
    evaluation: float  # variance from evaluation seeds
    entries: int  # variants and controls it is averaged over
    training_seeds: int
    evaluation_seeds: int

    @property
    def evaluation_share(self) -> float:
        total = self.training + self.evaluation
        return self.evaluation / total if total > 0 else 0.0


def values_by_seed(results: pd.DataFrame, task: str, dataset: str, metric: str, target: float) -> dict:
    """{variant: {(seed, eval_seed): value at the target L0}}, each (seed, eval_seed)'s sweep
    interpolated on its own; pairs whose sweep misses the target are left out."""
    rows = model_rows(results, task, dataset, metric, by_eval_seed=True)
    table = {}
    for (variant, seed, eval_seed), group in rows.groupby(["variant", "seed", "eval_seed"]):
        found = interpolate(group["l0"].to_numpy(), group["value"].to_numpy(), target)
        if found is not None:
            table.setdefault(variant, {})[seed, eval_seed] = found[0]
    return table


def entry_components(values: dict) -> tuple[float, float, int, int] | None:
    """(training variance, evaluation variance, training seeds, evaluation seeds) of one entry;
    None without two training seeds sharing the same two or more evaluation seeds."""
    seeds = sorted({s for s, _ in values})
    evals = sorted({e for _, e in values})
    if len(seeds) < 2 or len(evals) < 2 or any((s, e) not in values for s in seeds for e in evals):
        return None
    grid = np.array([[values[s, e] for e in evals] for s in seeds])
    within = float(grid.var(axis=1, ddof=1).mean())
    between = float(grid.mean(axis=1).var(ddof=1))
    return max(0.0, between - within / len(evals)), within, len(seeds), len(evals)


def variance_split(results: pd.DataFrame, task: str, dataset: str, metric: str, target: float) -> Split | None:
    """The headline's training/evaluation split, or None where no entry has two training seeds
    with the same two or more evaluation seeds."""
    parts = [c for c in map(entry_components, values_by_seed(results, task, dataset, metric, target).values())
             if c is not None]
    if not parts:
        return None
    return Split(float(np.mean([p[0] for p in parts])), float(np.mean([p[1] for p in parts])), len(parts),
                 min(p[2] for p in parts), min(p[3] for p in parts))
